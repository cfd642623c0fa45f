//! How a device buffer's packed bytes travel: the three methods, the measured
//! profile and the model that picks one per message.
//!
//! # Methods
//! * [`Method::Device`]: pack on the GPU into device memory and hand the
//!   device buffer to a CUDA-aware MPI (the receiver unpacks from device
//!   memory). Only valid when the MPI is CUDA-aware.
//! * [`Method::Mapped`]: the pack kernel writes straight into mapped pinned
//!   host memory (one shot over the bus); MPI sends host memory. The receiver
//!   unpacks by reading mapped host memory from the kernel.
//! * [`Method::Staged`]: pack into device memory, copy to pinned host memory,
//!   send; receive into pinned host memory, copy to the device, unpack.
//!
//! # Profile format
//! A text file, written by the 2-rank measure program
//! (`mpi/tests/c/measure.c`, see `mpi/README.md`):
//!
//! ```text
//! memwall-mpi-profile 1
//! # quantity bytes seconds
//! mpi_host 65536 1.2e-5
//! pack_device 65536 4.0e-6
//! ```
//!
//! Quantities ([`Quantity`]): `mpi_host` and `mpi_device` (one-way message
//! time between the two ranks for host and device buffers; `mpi_device` only
//! when the MPI is CUDA-aware), `pack_device` and `pack_mapped` (GPU pack
//! into device memory and into mapped host memory), `d2h` and `h2d` (pinned
//! copies). Lines starting with `#` and blank lines are ignored; sizes of one
//! quantity may come in any order.
//!
//! # Model
//! Each quantity is a piecewise-linear function of the byte count through its
//! measured points (beyond the last point it grows with the last segment's
//! slope, below the first it scales linearly to zero). A method's predicted
//! time is the sum of its steps; unpack is taken to cost what pack costs:
//!
//! * device: `2 pack_device + mpi_device`
//! * mapped: `2 pack_mapped + mpi_host`
//! * staged: `2 pack_device + d2h + h2d + mpi_host`
//!
//! The model picks the cheapest method whose quantities are all measured.
//! Without a profile (or with one that lacks what a method needs) the choice
//! is [`Method::Staged`], which works with any MPI.
//!
//! The machine profile that `memwall measure` writes (`MEMWALL_PROFILE`,
//! else `~/.cache/memwall/profile.toml`) fills the device-side quantities
//! this profile lacks ([`Profile::fill_from_machine`]), so a machine that ran
//! only `memwall measure` still chooses between `mapped` and `staged`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// How a device buffer's packed bytes reach MPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// Device memory handed to a CUDA-aware MPI.
    Device,
    /// One shot into mapped pinned host memory.
    Mapped,
    /// Device pack, then a pinned copy.
    Staged,
}

impl Method {
    /// Every method, in the model's tie-break order.
    pub const ALL: [Method; 3] = [Method::Device, Method::Mapped, Method::Staged];

    /// The name used by `MEMWALL_MPI_METHOD`.
    pub fn name(self) -> &'static str {
        match self {
            Method::Device => "device",
            Method::Mapped => "mapped",
            Method::Staged => "staged",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "device" | "cuda-aware" => Ok(Method::Device),
            "mapped" | "one-shot" => Ok(Method::Mapped),
            "staged" => Ok(Method::Staged),
            other => Err(format!("unknown method {other:?} (expected device, mapped or staged)")),
        }
    }
}

/// A measured quantity of the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quantity {
    /// One-way MPI message time, host buffers.
    MpiHost,
    /// One-way MPI message time, device buffers (CUDA-aware MPI only).
    MpiDevice,
    /// GPU pack into device memory.
    PackDevice,
    /// GPU pack into mapped pinned host memory.
    PackMapped,
    /// Device-to-host pinned copy.
    D2h,
    /// Host-to-device pinned copy.
    H2d,
}

impl Quantity {
    /// Every quantity.
    pub const ALL: [Quantity; 6] = [
        Quantity::MpiHost,
        Quantity::MpiDevice,
        Quantity::PackDevice,
        Quantity::PackMapped,
        Quantity::D2h,
        Quantity::H2d,
    ];

    /// The name in the profile file.
    pub fn name(self) -> &'static str {
        match self {
            Quantity::MpiHost => "mpi_host",
            Quantity::MpiDevice => "mpi_device",
            Quantity::PackDevice => "pack_device",
            Quantity::PackMapped => "pack_mapped",
            Quantity::D2h => "d2h",
            Quantity::H2d => "h2d",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        Quantity::ALL.into_iter().find(|q| q.name() == s)
    }
}

/// The first line of a profile.
pub const PROFILE_HEADER: &str = "memwall-mpi-profile 1";

/// Measured times per quantity: (bytes, seconds) points sorted by bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    curves: BTreeMap<Quantity, Vec<(u64, f64)>>,
}

impl Profile {
    /// Parses the profile format (see the module documentation).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.trim().starts_with('#'));
        match lines.next() {
            Some((_, l)) if l.trim() == PROFILE_HEADER => {}
            Some((n, l)) => return Err(format!("line {}: expected {PROFILE_HEADER:?}, found {:?}", n + 1, l.trim())),
            None => return Err("empty profile".to_string()),
        }
        let mut p = Profile::default();
        for (n, line) in lines {
            let f: Vec<&str> = line.split_whitespace().collect();
            let bad = |why: &str| format!("line {}: {why}: {:?}", n + 1, line.trim());
            let [q, bytes, secs] = f[..] else { return Err(bad("expected `quantity bytes seconds`")) };
            let q = Quantity::from_name(q).ok_or_else(|| bad("unknown quantity"))?;
            let bytes: u64 = bytes.parse().map_err(|_| bad("bad byte count"))?;
            let secs: f64 = secs.parse().map_err(|_| bad("bad seconds"))?;
            if !secs.is_finite() || secs < 0.0 {
                return Err(bad("seconds must be finite and not negative"));
            }
            p.add(q, bytes, secs);
        }
        Ok(p)
    }

    /// Adds one measured point (a repeated size keeps the latest).
    pub fn add(&mut self, q: Quantity, bytes: u64, seconds: f64) {
        let v = self.curves.entry(q).or_default();
        match v.binary_search_by_key(&bytes, |&(b, _)| b) {
            Ok(i) => v[i].1 = seconds,
            Err(i) => v.insert(i, (bytes, seconds)),
        }
    }

    /// The profile as text, in the format [`Profile::parse`] reads.
    pub fn to_text(&self) -> String {
        let mut s = format!("{PROFILE_HEADER}\n# quantity bytes seconds\n");
        for (q, pts) in &self.curves {
            for (b, t) in pts {
                s.push_str(&format!("{} {b} {t:e}\n", q.name()));
            }
        }
        s
    }

    /// Adds what `memwall measure`'s machine profile knows
    /// ([`memwall::profile::Profile`]) for the quantities this profile has
    /// not measured: `h2d` and `d2h` from `h2d_gbps`/`d2h_gbps`,
    /// `pack_device` from the slowest `gpu_pack_gbps_<block>`, `pack_mapped`
    /// from `gpu_pack_mapped_gbps`, each as a line through the origin at
    /// that bandwidth. Returns the quantities it added.
    pub fn fill_from_machine(&mut self, machine: &memwall::profile::Profile) -> Vec<Quantity> {
        let slowest_pack = machine
            .keys()
            .filter(|k| k.starts_with("gpu_pack_gbps_"))
            .filter_map(|k| machine.get(k))
            .filter(|v| v.is_finite() && *v > 0.0)
            .min_by(f64::total_cmp);
        let rates = [
            (Quantity::H2d, machine.get("h2d_gbps")),
            (Quantity::D2h, machine.get("d2h_gbps")),
            (Quantity::PackDevice, slowest_pack),
            (Quantity::PackMapped, machine.get("gpu_pack_mapped_gbps")),
        ];
        let mut added = Vec::new();
        for (q, gbps) in rates {
            let Some(gbps) = gbps.filter(|g| g.is_finite() && *g > 0.0) else { continue };
            if self.has(q) {
                continue;
            }
            const MIB: u64 = 1 << 20;
            self.add(q, MIB, MIB as f64 / (gbps * 1e9));
            added.push(q);
        }
        added
    }

    /// Whether `q` was measured.
    pub fn has(&self, q: Quantity) -> bool {
        self.curves.get(&q).is_some_and(|v| !v.is_empty())
    }

    /// The predicted time of `q` for `bytes` bytes, if measured.
    pub fn time(&self, q: Quantity, bytes: u64) -> Option<f64> {
        let pts = self.curves.get(&q).filter(|v| !v.is_empty())?;
        let x = bytes as f64;
        let (b0, t0) = pts[0];
        if bytes <= b0 || pts.len() == 1 {
            // Scale linearly from the origin through the nearest point.
            if b0 == 0 {
                return Some(t0);
            }
            return Some(t0 * x / b0 as f64);
        }
        let i = pts.partition_point(|&(b, _)| b < bytes).min(pts.len() - 1);
        let (xa, ya) = (pts[i - 1].0 as f64, pts[i - 1].1);
        let (xb, yb) = (pts[i].0 as f64, pts[i].1);
        let slope = ((yb - ya) / (xb - xa)).max(0.0);
        Some((ya + slope * (x - xa)).max(0.0))
    }
}

/// Chooses a [`Method`] per message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    /// The measured profile, if one was loaded.
    pub profile: Option<Profile>,
    /// A method forced by `MEMWALL_MPI_METHOD`.
    pub forced: Option<Method>,
}

impl Model {
    /// The predicted time of `m` for `bytes`, when the profile has every
    /// quantity it needs. `mpi_host` is common to `mapped` and `staged`:
    /// without it (a machine profile from `memwall measure` alone, no 2-rank
    /// measurement) those two are still compared on their device-side
    /// steps, and `device`, which needs `mpi_host` to be weighed against
    /// them, is left out.
    pub fn predict(&self, m: Method, bytes: u64) -> Option<f64> {
        let p = self.profile.as_ref()?;
        let t = |q| p.time(q, bytes);
        let host = t(Quantity::MpiHost);
        Some(match m {
            Method::Device => {
                host?;
                2.0 * t(Quantity::PackDevice)? + t(Quantity::MpiDevice)?
            }
            Method::Mapped => 2.0 * t(Quantity::PackMapped)? + host.unwrap_or(0.0),
            Method::Staged => {
                2.0 * t(Quantity::PackDevice)? + t(Quantity::D2h)? + t(Quantity::H2d)? + host.unwrap_or(0.0)
            }
        })
    }

    /// The method for a message of `bytes` packed bytes.
    pub fn choose(&self, bytes: u64) -> Method {
        if let Some(m) = self.forced {
            return m;
        }
        Method::ALL
            .into_iter()
            .filter_map(|m| self.predict(m, bytes).map(|t| (m, t)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(Method::Staged, |(m, _)| m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(lines: &str) -> Profile {
        Profile::parse(&format!("{PROFILE_HEADER}\n{lines}")).expect("valid profile")
    }

    #[test]
    fn method_names_round_trip() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>(), Ok(m));
        }
        assert_eq!(" Cuda-Aware ".parse::<Method>(), Ok(Method::Device));
        assert!("gpu".parse::<Method>().is_err());
    }

    #[test]
    fn parse_rejects_bad_input() {
        assert!(Profile::parse("").is_err());
        assert!(Profile::parse("memwall-mpi-profile 2\n").is_err());
        for bad in ["mpi_host 10", "teleport 10 1e-6", "mpi_host x 1e-6", "mpi_host 10 -1", "mpi_host 10 nan"] {
            let e = Profile::parse(&format!("{PROFILE_HEADER}\n{bad}\n")).expect_err(bad);
            assert!(e.contains("line 2"), "{e}");
        }
    }

    #[test]
    fn round_trips_through_text() {
        let p = profile("# comment\n\nmpi_host 1024 2e-6\nmpi_host 16 1e-6\nd2h 1024 3e-6\n");
        assert_eq!(Profile::parse(&p.to_text()), Ok(p));
    }

    #[test]
    fn interpolates_and_extrapolates() {
        let p = profile("mpi_host 1000 1.0\nmpi_host 3000 2.0\n");
        assert_eq!(p.time(Quantity::MpiHost, 2000), Some(1.5));
        assert_eq!(p.time(Quantity::MpiHost, 5000), Some(3.0));
        assert_eq!(p.time(Quantity::MpiHost, 500), Some(0.5));
        assert_eq!(p.time(Quantity::MpiHost, 1000), Some(1.0));
        assert_eq!(p.time(Quantity::D2h, 1000), None);
        let one = profile("d2h 100 1.0\n");
        assert_eq!(one.time(Quantity::D2h, 300), Some(3.0));
    }

    #[test]
    fn no_profile_means_staged() {
        let m = Model::default();
        assert_eq!(m.choose(1), Method::Staged);
        assert_eq!(m.choose(1 << 30), Method::Staged);
        assert_eq!(m.predict(Method::Device, 10), None);
    }

    #[test]
    fn forced_method_wins() {
        let m = Model { profile: None, forced: Some(Method::Mapped) };
        assert_eq!(m.choose(5), Method::Mapped);
    }

    #[test]
    fn picks_the_cheapest_measured_method() {
        // Mapped is cheap for small messages, staged wins for large ones;
        // device is never eligible (no mpi_device: MPI not CUDA-aware).
        let p = profile(
            "mpi_host 1024 1e-6\nmpi_host 1048576 1e-4\n\
             pack_mapped 1024 1e-7\npack_mapped 1048576 1e-3\n\
             pack_device 1024 5e-6\npack_device 1048576 1e-5\n\
             d2h 1024 5e-6\nd2h 1048576 4e-5\nh2d 1024 5e-6\nh2d 1048576 4e-5\n",
        );
        let m = Model { profile: Some(p), forced: None };
        assert_eq!(m.predict(Method::Device, 1024), None);
        assert_eq!(m.choose(1024), Method::Mapped);
        assert_eq!(m.choose(1 << 20), Method::Staged);
    }

    #[test]
    fn machine_profile_fills_what_is_missing_and_mapped_vs_staged_needs_no_mpi_host() {
        let machine = memwall::profile::Profile::parse(
            "h2d_gbps = 20\nd2h_gbps = 25\ngpu_pack_gbps_16 = 400\ngpu_pack_gbps_512 = 1500\n\
             gpu_pack_mapped_gbps = 10\nddr_memcpy_gbps = 12\n",
        )
        .unwrap();
        // The 2-rank profile measured d2h itself: that one stays.
        let mut p = profile("d2h 1048576 1e-3\n");
        let added = p.fill_from_machine(&machine);
        assert_eq!(added, vec![Quantity::H2d, Quantity::PackDevice, Quantity::PackMapped]);
        assert_eq!(p.time(Quantity::D2h, 1 << 20), Some(1e-3));
        let h2d = p.time(Quantity::H2d, 1 << 21).unwrap();
        assert!((h2d - 2.0 * 1048576.0 / 20e9).abs() < 1e-12, "{h2d}");
        // The slowest GPU pack rate is the device pack.
        let pack = p.time(Quantity::PackDevice, 1 << 20).unwrap();
        assert!((pack - 1048576.0 / 400e9).abs() < 1e-12, "{pack}");
        // No mpi_host: mapped (2 x 1 MiB at 10 GB/s) against staged
        // (2 x pack + d2h + h2d) on their own steps; device left out.
        let m = Model { profile: Some(p.clone()), forced: None };
        assert_eq!(m.predict(Method::Device, 1 << 20), None);
        assert!(m.predict(Method::Mapped, 1 << 20).is_some() && m.predict(Method::Staged, 1 << 20).is_some());
        assert_eq!(m.choose(1 << 20), Method::Mapped, "{:?}", m.predict(Method::Staged, 1 << 20));
        // A slow mapped pack flips it.
        let slow = memwall::profile::Profile::parse("gpu_pack_mapped_gbps = 0.5\n").unwrap();
        let mut q = profile("d2h 1048576 1e-5\nh2d 1048576 1e-5\npack_device 1048576 1e-6\n");
        q.fill_from_machine(&slow);
        assert_eq!(Model { profile: Some(q), forced: None }.choose(1 << 20), Method::Staged);
        // Nothing usable: nothing added.
        let mut e = Profile::default();
        let junk = memwall::profile::Profile::parse("h2d_gbps = 0\nd2h_gbps = -3\n").unwrap();
        assert!(e.fill_from_machine(&junk).is_empty());
    }

    #[test]
    fn device_chosen_when_cuda_aware_and_fast() {
        let p = profile(
            "mpi_host 4096 1e-5\nmpi_device 4096 2e-6\npack_device 4096 1e-6\npack_mapped 4096 1e-5\n\
             d2h 4096 5e-6\nh2d 4096 5e-6\n",
        );
        let m = Model { profile: Some(p), forced: None };
        assert_eq!(m.choose(4096), Method::Device);
    }
}
