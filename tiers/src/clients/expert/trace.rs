//! Routing traces: the (layer, expert) accesses of a run and the
//! predictions made before each layer, in memory and as text.
//!
//! The text form, one event a line (`#` starts a comment):
//!
//! ```text
//! memwall-expert-trace v1
//! layers 4
//! experts 16
//! p 1 3 5 9     # prediction for layer 1: experts 3, 5, 9
//! a 0 3         # access of layer 0, expert 3
//! ```

use std::path::Path;

use super::super::{ClientError, Result};

/// The first line of a trace file.
const HEADER: &str = "memwall-expert-trace v1";

/// One event of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceEvent {
    /// A layer used an expert (one event per expert per layer call, however
    /// many tokens it served).
    Access {
        /// The layer.
        layer: u32,
        /// The FFN expert.
        expert: u32,
    },
    /// Before `layer` ran, these experts were predicted for it.
    Predict {
        /// The layer predicted for.
        layer: u32,
        /// The predicted FFN experts.
        experts: Vec<u32>,
    },
}

/// A routing trace over `layers` x `experts` FFN experts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trace {
    /// Layers.
    pub layers: usize,
    /// FFN experts per layer.
    pub experts: usize,
    /// The events, in order.
    pub events: Vec<TraceEvent>,
}

impl Trace {
    /// An empty trace.
    pub fn new(layers: usize, experts: usize) -> Self {
        Trace { layers, experts, events: Vec::new() }
    }

    /// The accesses, in order, as (layer, expert).
    pub fn accesses(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.events.iter().filter_map(|e| match e {
            TraceEvent::Access { layer, expert } => Some((*layer as usize, *expert as usize)),
            TraceEvent::Predict { .. } => None,
        })
    }

    /// Number of accesses.
    pub fn access_count(&self) -> usize {
        self.accesses().count()
    }

    /// Share of accessed experts that the latest prediction for their layer
    /// named (1 when every access was predicted; 0 without predictions).
    pub fn prediction_accuracy(&self) -> f64 {
        let mut predicted: Vec<Vec<u32>> = vec![Vec::new(); self.layers];
        let (mut hit, mut total) = (0usize, 0usize);
        for e in &self.events {
            match e {
                TraceEvent::Predict { layer, experts } => {
                    if let Some(p) = predicted.get_mut(*layer as usize) {
                        p.clone_from(experts);
                    }
                }
                TraceEvent::Access { layer, expert } => {
                    total += 1;
                    hit += usize::from(predicted.get(*layer as usize).is_some_and(|p| p.contains(expert)));
                }
            }
        }
        if total == 0 {
            0.0
        } else {
            hit as f64 / total as f64
        }
    }

    /// The text form (see the module docs).
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = format!("{HEADER}\nlayers {}\nexperts {}\n", self.layers, self.experts);
        for e in &self.events {
            match e {
                TraceEvent::Access { layer, expert } => {
                    let _ = writeln!(s, "a {layer} {expert}");
                }
                TraceEvent::Predict { layer, experts } => {
                    let _ = write!(s, "p {layer}");
                    for x in experts {
                        let _ = write!(s, " {x}");
                    }
                    s.push('\n');
                }
            }
        }
        s
    }

    /// Parses the text form; errors name the line.
    pub fn from_text(text: &str) -> Result<Trace> {
        let bad = |line: usize, reason: String| ClientError::Trace { line, reason };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("").trim()))
            .filter(|(_, l)| !l.is_empty());
        match lines.next() {
            Some((_, l)) if l == HEADER => {}
            Some((n, l)) => return Err(bad(n, format!("expected {HEADER:?}, found {l:?}"))),
            None => return Err(bad(1, format!("empty: expected {HEADER:?}"))),
        }
        let mut dim = |key: &str| -> Result<usize> {
            let (n, l) = lines.next().ok_or_else(|| bad(0, format!("ends before `{key} N`")))?;
            let v =
                l.strip_prefix(key).map(str::trim).ok_or_else(|| bad(n, format!("expected `{key} N`, found {l:?}")))?;
            v.parse().map_err(|_| bad(n, format!("{key} {v:?} is not a number")))
        };
        let layers = dim("layers")?;
        let experts = dim("experts")?;
        let mut trace = Trace::new(layers, experts);
        for (n, l) in lines {
            let mut words = l.split_whitespace();
            let kind = words.next().unwrap_or("");
            let mut nums = Vec::new();
            for w in words {
                nums.push(w.parse::<u32>().map_err(|_| bad(n, format!("{w:?} is not a number")))?);
            }
            let event = match (kind, nums.as_slice()) {
                ("a", &[layer, expert]) => TraceEvent::Access { layer, expert },
                ("p", [layer, experts @ ..]) => TraceEvent::Predict { layer: *layer, experts: experts.to_vec() },
                _ => return Err(bad(n, format!("expected `a LAYER EXPERT` or `p LAYER EXPERT...`, found {l:?}"))),
            };
            trace.check(&event).map_err(|r| bad(n, r))?;
            trace.events.push(event);
        }
        Ok(trace)
    }

    /// Checks that `event` fits the trace's shape.
    fn check(&self, event: &TraceEvent) -> std::result::Result<(), String> {
        let (layer, experts) = match event {
            TraceEvent::Access { layer, expert } => (*layer, std::slice::from_ref(expert)),
            TraceEvent::Predict { layer, experts } => (*layer, experts.as_slice()),
        };
        if layer as usize >= self.layers {
            return Err(format!("layer {layer} out of range (layers {})", self.layers));
        }
        match experts.iter().find(|&&e| e as usize >= self.experts) {
            Some(e) => Err(format!("expert {e} out of range (experts {})", self.experts)),
            None => Ok(()),
        }
    }

    /// Writes the text form to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_text()).map_err(|e| ClientError::io("write", path, e))
    }

    /// Reads a trace written by [`Trace::save`].
    pub fn load(path: &Path) -> Result<Trace> {
        let text = std::fs::read_to_string(path).map_err(|e| ClientError::io("read", path, e))?;
        Trace::from_text(&text)
    }
}
