//! The clients with HBM as the top tier (skipped without a device): experts
//! pinned in HBM, and a KV pool in HBM behaving exactly like one in DDR.

mod common;

use common::{content, pager_with};
use half::bf16;
use memwall_tiers::clients::expert::{ExpertCache, ExpertCacheConfig};
use memwall_tiers::clients::kv::{KvCache, KvConfig, KvShape};
use memwall_tiers::clients::{top_tier, ClientError, KV_ID_BASE};
use memwall_tiers::config::{Capacity, Toggle};
use memwall_tiers::memwall::dtype::Dtype;
use memwall_tiers::memwall::gpu::gpu_or_skip;
use memwall_tiers::memwall::moe::{ExpertLayout, MoeConfig};
use memwall_tiers::Tier;

fn hbm_pager() -> common::TestPager {
    pager_with(16 << 20, 1 << 26, |c| {
        c.hbm.enabled = Toggle::On;
        c.hbm.capacity = Capacity::Bytes(8 << 20);
    })
}

#[test]
fn gpu_expert_cache_pins_experts_in_hbm() {
    let Some(gpu) = gpu_or_skip("gpu_expert_cache_pins_experts_in_hbm") else { return };
    drop(gpu);
    let t = hbm_pager();
    assert_eq!(top_tier(&t.pager), Tier::Hbm);
    let moe = MoeConfig::new(ExpertLayout::paper(12).unwrap());
    let cache = ExpertCache::new(t.pager.clone(), ExpertCacheConfig::new(2, moe, 65_536)).unwrap();
    assert_eq!(cache.tier(), Tier::Hbm);
    for e in 0..8 {
        cache.load(1, e, &content(e as u64, 1, 65_536)).unwrap();
    }
    cache.prefetch(1, &[2, 3]).unwrap();
    let pin = cache.get(1, 2).unwrap();
    assert_eq!(pin.device().unwrap().len(), 65_536);
    drop(pin);
    assert_eq!(t.pager.read(cache.id(1, 2)).unwrap(), content(2, 1, 65_536));
    assert_eq!(cache.stats().accesses, 1);
}

#[test]
fn gpu_kv_pool_in_hbm_matches_a_pool_in_ddr() {
    let Some(gpu) = gpu_or_skip("gpu_kv_pool_in_hbm_matches_a_pool_in_ddr") else { return };
    drop(gpu);
    let t = hbm_pager();
    let shape = KvShape { layers: 2, kv_heads: 2, head_dim: 64, page_size: 4, num_pages: 16, dtype: Dtype::BF16 };
    let mut cfg = KvConfig::new(shape);
    cfg.swap_group_blocks = 2;
    let mut on_gpu = KvCache::new(t.pager.clone(), cfg).unwrap();
    assert_eq!(on_gpu.tier(), Tier::Hbm);
    cfg.tier = Some(Tier::Ddr);
    cfg.id_base = KV_ID_BASE + (1 << 40);
    let mut on_host = KvCache::new(t.pager.clone(), cfg).unwrap();
    let n = 2 * 2 * 64;
    let token =
        |x: usize| -> Vec<bf16> { (0..n).map(|i| bf16::from_f32(((i * 7 + x * 13) % 101) as f32 / 50.0)).collect() };
    for kv in [&mut on_gpu, &mut on_host] {
        let a = kv.add_sequence();
        for x in 0..10 {
            kv.append(a, &token(x), &token(x + 100)).unwrap();
        }
        let b = kv.fork(a).unwrap();
        kv.append(b, &token(50), &token(51)).unwrap(); // copy-on-write
        kv.write(a, 1, 2, &token(60)[..128], &token(61)[..128]).unwrap();
        kv.swap_out(a, Tier::Nvme).unwrap();
        kv.swap_in(a).unwrap();
    }
    for s in on_host.sequences() {
        assert_eq!(on_gpu.len(s).unwrap(), on_host.len(s).unwrap());
        for pos in 0..on_host.len(s).unwrap() {
            for layer in 0..2 {
                assert_eq!(on_gpu.read::<bf16>(s, layer, pos).unwrap(), on_host.read::<bf16>(s, layer, pos).unwrap());
            }
        }
    }
    assert!(on_gpu.pool_device().is_ok());
    assert!(matches!(on_gpu.k_cache::<bf16>(0), Err(ClientError::Tier(_))));
}
