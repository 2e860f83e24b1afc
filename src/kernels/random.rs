//! The seeded random streams: one xoshiro256++ stream per (seed, index), uniforms and normals.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Chains are split into fixed blocks of this many; each block has its own random stream and is
/// the unit of parallel work. The block size never depends on the thread count, so the same seed
/// gives the same bits for any `RAYON_NUM_THREADS`.
pub const CHAIN_BLOCK: usize = 50;

/// The random-number generator of every stochastic routine.
pub type ChainRng = Xoshiro256PlusPlus;

/// SplitMix64 finaliser: a bijective mix of 64 bits.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random stream number `index` of the master seed `seed`. Streams are derived from
/// (seed, index), never from a thread, so parallel results do not depend on the thread count.
pub fn stream(seed: u64, index: u64) -> ChainRng {
    ChainRng::seed_from_u64(splitmix64(splitmix64(seed) ^ index))
}

/// The four state words of a stream, as checkpoints store them.
pub(crate) fn stream_words(rng: &ChainRng) -> [u64; 4] {
    // rand_xoshiro exposes its state only through serde (`{"s": [w0, w1, w2, w3]}`).
    #[derive(serde::Deserialize)]
    struct Words {
        s: [u64; 4],
    }
    let words = serde_json::to_value(rng).and_then(serde_json::from_value::<Words>);
    words.expect("a xoshiro256++ state is four words").s
}

/// The stream in state `words` (all zeros, which xoshiro cannot be in, gives a fixed stream).
pub(crate) fn stream_from_words(words: [u64; 4]) -> ChainRng {
    let mut seed = [0u8; 32];
    for (bytes, w) in seed.chunks_exact_mut(8).zip(words) {
        bytes.copy_from_slice(&w.to_le_bytes());
    }
    ChainRng::from_seed(seed)
}

const INV_2_24: f32 = 1.0 / 16_777_216.0;

/// Fills `out` with uniform numbers in [0, 1), two 24-bit floats per 64-bit draw (24 bits so that
/// rounding never gives 1.0): `x >> 40`, then `x & 0xFFFFFF`, each times 2⁻²⁴; an odd last one
/// takes `x >> 40`.
pub fn fill_uniform(rng: &mut ChainRng, out: &mut [f32]) {
    let mut pairs = out.chunks_exact_mut(2);
    for pair in &mut pairs {
        let x = rng.next_u64();
        pair[0] = (x >> 40) as f32 * INV_2_24;
        pair[1] = (x & 0xFF_FFFF) as f32 * INV_2_24;
    }
    for last in pairs.into_remainder() {
        *last = (rng.next_u64() >> 40) as f32 * INV_2_24;
    }
}

/// One uniform number in [0, 1).
pub fn uniform(rng: &mut ChainRng) -> f32 {
    (rng.next_u64() >> 40) as f32 * INV_2_24
}

/// Fills `out` with standard normal numbers (Box–Muller in f64).
pub fn fill_normal(rng: &mut ChainRng, out: &mut [f32]) {
    for pair in out.chunks_mut(2) {
        let x = rng.next_u64();
        // 32 bits each; u1 in (0, 1] so that ln(u1) is finite.
        let u1 = ((x >> 32) as f64 + 1.0) / 4_294_967_296.0;
        let u2 = (x & 0xFFFF_FFFF) as f64 / 4_294_967_296.0;
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        pair[0] = (r * theta.cos()) as f32;
        if pair.len() == 2 {
            pair[1] = (r * theta.sin()) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fill_uniform` is its definition (which fixes the random streams of every sampler and
    /// so what checkpoints resume): per 64-bit draw `x`, `x >> 40` then `x & 0xFFFFFF`, times
    /// 2⁻²⁴, and `x >> 40` for an odd last value.
    #[test]
    fn uniforms_follow_their_definition() {
        for len in [0, 1, 2, 3, 255, 256, 257, 511, 600] {
            let (mut rng, mut reference) = (stream(4, len as u64), stream(4, len as u64));
            let mut u = vec![0f32; len];
            fill_uniform(&mut rng, &mut u);
            for k in (0..len).step_by(2) {
                let x = reference.next_u64();
                assert_eq!(u[k], (x >> 40) as f32 / 16_777_216.0);
                if k + 1 < len {
                    assert_eq!(u[k + 1], (x & 0xFF_FFFF) as f32 / 16_777_216.0);
                }
            }
            assert_eq!(rng, reference, "as many draws as values in pairs");
        }
    }

    /// A stream rebuilt from its words continues exactly where it was.
    #[test]
    fn streams_round_trip_through_their_words() {
        let mut rng = stream(9, 3);
        rng.next_u64();
        let mut copy = stream_from_words(stream_words(&rng));
        assert_eq!(copy, rng);
        assert_eq!(copy.next_u64(), rng.next_u64());
    }
}
