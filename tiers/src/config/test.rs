use super::*;

#[test]
fn embedded_default_text_equals_default_struct() {
    let parsed = Config::from_text(DEFAULT_CONFIG).unwrap();
    let d = Config::default();
    assert_eq!(parsed.hbm, d.hbm);
    assert_eq!(parsed.ddr, d.ddr);
    assert_eq!(parsed.nvme.dir, d.nvme.dir);
    assert_eq!(parsed.nvme.dir, std::env::temp_dir().join("memwall-tiers"));
    assert_eq!(parsed.nvme.file, None);
    assert_eq!(parsed.nvme.capacity, d.nvme.capacity);
    assert_eq!(parsed.nvme.io, d.nvme.io);
    assert_eq!(parsed.nvme.direct, d.nvme.direct);
    assert_eq!(parsed.nvme.queue_depth, d.nvme.queue_depth);
    assert_eq!(parsed.nvme.lanes, d.nvme.lanes);
    assert_eq!(d.nvme_lanes(), d.prefetch_workers + 1, "auto lanes: a worker each and a caller");
    assert_eq!(parsed.nvme.block_size, d.nvme.block_size);
    assert_eq!(parsed.nvme.register_buffers, d.nvme.register_buffers);
    assert_eq!(parsed.nvme.memlock_budget, d.nvme.memlock_budget);
    assert_eq!(parsed.policy, d.policy);
    assert_eq!(parsed.prefetch_workers, d.prefetch_workers);
    d.validate().unwrap();
}

#[test]
fn text_overrides_apply_over_the_default() {
    let c = Config::from_text(
        "nvme.io = pread  # comment\nnvme.queue_depth = 4\nnvme.block_size = 256KiB\n\
         ddr.capacity = 3GiB\nhbm.enabled = off\nnvme.dir = \"/x/y\"\npolicy = class\n\
         nvme.memlock_budget = 64K\nnvme.register_buffers = off\nnvme.direct = off",
    )
    .unwrap();
    assert_eq!(c.nvme.io, IoEngineChoice::Pread);
    assert_eq!(c.nvme.queue_depth, 4);
    assert_eq!(c.nvme.block_size, 256 << 10);
    assert_eq!(c.ddr.capacity, Capacity::Bytes(3 << 30));
    assert_eq!(c.hbm.enabled, Toggle::Off);
    assert_eq!(c.nvme.dir, PathBuf::from("/x/y"));
    assert_eq!(c.policy, PolicyKind::ClassPriority);
    assert_eq!(c.nvme.memlock_budget, Some(64 << 10));
    assert!(!c.nvme.register_buffers);
    assert_eq!(c.nvme.direct, Toggle::Off);
    assert_eq!(c.nvme.file, None);
    let named = Config::from_text("nvme.file = {temp}/state.data").unwrap();
    assert_eq!(named.nvme.file, Some(std::env::temp_dir().join("state.data")));
    assert_eq!(Config::from_text("nvme.file = /a/b\nnvme.file = none").unwrap().nvme.file, None);
    let (k, v, r) = config_err("nvme.file = /");
    assert_eq!((k.as_str(), v.as_str()), ("nvme.file", "/"));
    assert!(r.contains("must name a file"), "{r}");
    // Untouched keys keep the default.
    assert_eq!(c.prefetch_workers, 2);
    assert_eq!(c.nvme.lanes, None);
    let lanes = Config::from_text("nvme.lanes = 5\nprefetch_workers = 7").unwrap();
    assert_eq!((lanes.nvme.lanes, lanes.nvme_lanes()), (Some(5), 5));
    assert_eq!(Config::from_text("prefetch_workers = 7\nnvme.lanes = auto").unwrap().nvme_lanes(), 8);
}

fn config_err(text: &str) -> (String, String, String) {
    match Config::from_text(text) {
        Err(TierError::Config { key, value, reason }) => (key, value, reason),
        other => panic!("{text:?}: expected a config error, got {other:?}"),
    }
}

#[test]
fn bad_values_name_the_key_and_value() {
    let (k, v, _) = config_err("nvme.queue_depth = 0");
    assert_eq!((k.as_str(), v.as_str()), ("nvme.queue_depth", "0"));
    let (k, v, r) = config_err("nvme.lanes = 0");
    assert_eq!((k.as_str(), v.as_str()), ("nvme.lanes", "0"));
    assert!(r.contains("1..=64"), "{r}");
    let (k, v, _) = config_err("nvme.lanes = many");
    assert_eq!((k.as_str(), v.as_str()), ("nvme.lanes", "many"));
    let (k, v, r) = config_err("nvme.block_size = 1000");
    assert_eq!((k.as_str(), v.as_str()), ("nvme.block_size", "1000"));
    assert!(r.contains("4096"), "{r}");
    let (k, _, r) = config_err("nvme.engine = fast");
    assert_eq!(k, "nvme.engine");
    assert!(r.contains("unknown key"));
    let (k, v, _) = config_err("\n\nthis line has no equals");
    assert_eq!((k.as_str(), v.as_str()), ("line 3", "this line has no equals"));
    let (k, v, _) = config_err("ddr.capacity = 12 parsecs");
    assert_eq!((k.as_str(), v.as_str()), ("ddr.capacity", "12 parsecs"));
    let (k, _, _) = config_err("ddr.capacity = 0");
    assert_eq!(k, "ddr.capacity");
    let (k, _, _) = config_err("nvme.io = spdk");
    assert_eq!(k, "nvme.io");
    let (k, _, r) = config_err("ddr.capacity = 99999999999TiB");
    assert_eq!(k, "ddr.capacity");
    assert!(r.contains("overflow"), "{r}");
    let msg = Config::from_text("prefetch_workers = 0").unwrap_err().to_string();
    assert!(msg.contains("prefetch_workers") && msg.contains("\"0\""), "{msg}");
}

#[test]
fn sizes_take_binary_suffixes() {
    assert_eq!(parse::size::<u64>("k", "4096").unwrap(), 4096);
    assert_eq!(parse::size::<u64>("k", "4KiB").unwrap(), 4096);
    assert_eq!(parse::size::<u64>("k", "2 MiB").unwrap(), 2 << 20);
    assert_eq!(parse::size::<u64>("k", "1G").unwrap(), 1 << 30);
    assert_eq!(parse::size::<u64>("k", "1TiB").unwrap(), 1 << 40);
    assert!(parse::size::<u64>("k", "MiB").is_err());
    assert!(parse::size::<u64>("k", "-1").is_err());
}

#[test]
fn machine_probes_give_plausible_numbers() {
    assert!(available_memory_bytes() > 0);
    assert!(free_disk_bytes(&std::env::temp_dir()).unwrap() > 0);
    assert!(free_disk_bytes(std::path::Path::new("/no/such/dir/memwall")).is_err());
    assert!(memlock_limit_bytes() > 0);
}
