//! Chrome / Perfetto traces of transfers and compute (`--trace FILE`).
//!
//! Disabled by default and then free: [`span`] returns a guard that records
//! nothing. [`enable`] starts recording; [`write()`] saves the events as a JSON
//! array of complete ("X") events, which chrome://tracing and
//! ui.perfetto.dev open. Each thread is its own track; `cat` names the lane
//! kind (compute, h2d, nvme...).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Instant;

use crate::error::{Error, Result};

struct Event {
    name: String,
    cat: &'static str,
    tid: u64,
    start_us: f64,
    dur_us: f64,
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static EVENTS: Mutex<Vec<Event>> = Mutex::new(Vec::new());

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn thread_id() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::thread::current().id().hash(&mut h);
    h.finish() % 10_000
}

/// Starts recording spans.
pub fn enable() {
    epoch();
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are recorded.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A span that ends when dropped.
#[must_use = "the span ends when this guard is dropped"]
pub struct Span {
    live: Option<(String, &'static str, Instant)>,
}

/// Starts a span named `name` in category `cat`.
pub fn span(name: impl Into<String>, cat: &'static str) -> Span {
    Span { live: enabled().then(|| (name.into(), cat, Instant::now())) }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some((name, cat, start)) = self.live.take() {
            let e = Event {
                name,
                cat,
                tid: thread_id(),
                start_us: start.duration_since(epoch()).as_secs_f64() * 1e6,
                dur_us: start.elapsed().as_secs_f64() * 1e6,
            };
            EVENTS.lock().unwrap_or_else(PoisonError::into_inner).push(e);
        }
    }
}

/// Writes the recorded events to `path` as a Chrome trace.
pub fn write(path: &std::path::Path) -> Result<usize> {
    let events = EVENTS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut s = String::from("[\n");
    for (i, e) in events.iter().enumerate() {
        let name = e.name.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            s,
            "{{\"name\":\"{name}\",\"cat\":\"{}\",\"ph\":\"X\",\"pid\":1,\"tid\":{},\"ts\":{:.3},\"dur\":{:.3}}}{}",
            e.cat,
            e.tid,
            e.start_us,
            e.dur_us,
            if i + 1 < events.len() { "," } else { "" }
        );
    }
    s.push(']');
    std::fs::write(path, s).map_err(|err| Error::invalid("trace file", path.display(), err.to_string()))?;
    Ok(events.len())
}

#[cfg(test)]
mod test {
    #[test]
    fn spans_are_recorded_once_enabled() {
        {
            let _s = super::span("before", "compute");
        }
        super::enable();
        {
            let _s = super::span("a \"quoted\" step", "compute");
        }
        let path = std::env::temp_dir().join(format!("memwall-trace-{}.json", std::process::id()));
        let n = super::write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(n >= 1);
        assert!(text.contains("\"name\":\"a \\\"quoted\\\" step\",\"cat\":\"compute\",\"ph\":\"X\""), "{text}");
        assert!(!text.contains("before"));
        let _ = std::fs::remove_file(path);
    }
}
