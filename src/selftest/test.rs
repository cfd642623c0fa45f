use super::*;

#[test]
fn shfl_source_follows_ptx() {
    assert_eq!(shfl_source(Shfl::Idx, 5, 3, 32), 3);
    assert_eq!(shfl_source(Shfl::Idx, 13, 35, 8), 8 + 3); // srcLane modulo width, own segment
    assert_eq!(shfl_source(Shfl::Up, 2, 3, 32), 2); // out of range: own value
    assert_eq!(shfl_source(Shfl::Up, 9, 3, 8), 9); // segment starts at 8
    assert_eq!(shfl_source(Shfl::Up, 12, 3, 8), 9);
    assert_eq!(shfl_source(Shfl::Down, 30, 3, 32), 30);
    assert_eq!(shfl_source(Shfl::Down, 4, 3, 8), 7);
    assert_eq!(shfl_source(Shfl::Down, 6, 3, 8), 6);
    assert_eq!(shfl_source(Shfl::Xor, 5, 1, 32), 4);
    assert_eq!(shfl_source(Shfl::Xor, 9, 8, 8), 1); // an earlier segment is allowed
    assert_eq!(shfl_source(Shfl::Xor, 1, 8, 8), 1); // a later one is not
}

#[test]
fn oracles_match_their_definitions() {
    let v: Vec<f32> = (0..256).map(|i| i as f32).collect();
    assert_eq!(block_sum_oracle(&v), 255.0 * 256.0 / 2.0);
    let src: Vec<u16> = (0..256).collect();
    assert_eq!(ldmatrix_oracle(&src, 4, false, 5, 2), (128 + 8 + 2) | ((128 + 8 + 3) << 16));
    assert_eq!(ldmatrix_oracle(&src, 4, true, 5, 2), (128 + 2 * 8 + 1) | ((128 + 3 * 8 + 1) << 16));
    assert_eq!(ldmatrix_oracle(&src, 1, false, 5, 1), 0);
}
