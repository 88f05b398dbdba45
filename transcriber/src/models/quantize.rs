//! ggml's block quantisation formats, written from their definition: rows are cut into blocks of 32
//! values, each stored with one f16 scale.
//!
//! - `q8_0` (34 bytes a block): `d = max|x| / 127`, then 32 × `i8 round(x / d)`.
//! - `q4_0` (18 bytes a block): `d = m / -8` where `m` is the value of largest magnitude, then 4-bit codes
//!   `q = min(15, trunc(x / d + 8.5))`: the codes of values j and j+16 share byte j of 16 (low, high nibble).
//!   On x86 with AVX2 (and ARM with int8 matmul) ggml repacks these rows for a blocked GEMM kernel.
//! - `q5_0` (22 bytes a block): `d = m / -16` where `m` is the value of largest magnitude, then 5-bit
//!   codes `q = min(31, trunc(x / d + 16.5))`: the low 4 bits of values j and j+16 share byte j of 16, the
//!   fifth bits are packed into a little-endian u32 (bit j for value j).

use half::f16;

/// A weight format of the converted model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    /// IEEE half floats (what the CTranslate2 packages ship).
    F16,
    /// 8-bit blocks.
    Q8_0,
    /// 5-bit blocks.
    Q5_0,
    /// 4-bit blocks.
    Q4_0,
}

/// Values per quantisation block.
pub const BLOCK: usize = 32;

impl WeightType {
    /// Parses `q8_0` / `q5_0` / `f16`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "f16" => Some(WeightType::F16),
            "q8_0" => Some(WeightType::Q8_0),
            "q5_0" => Some(WeightType::Q5_0),
            "q4_0" => Some(WeightType::Q4_0),
            _ => None,
        }
    }

    /// The suffix of the model name (`base-q8_0`), empty for f16.
    pub fn suffix(self) -> &'static str {
        match self {
            WeightType::F16 => "",
            WeightType::Q8_0 => "-q8_0",
            WeightType::Q5_0 => "-q5_0",
            WeightType::Q4_0 => "-q4_0",
        }
    }

    /// ggml's tensor type id.
    pub fn ggml_type(self) -> i32 {
        match self {
            WeightType::F16 => 1,
            WeightType::Q4_0 => 2,
            WeightType::Q5_0 => 6,
            WeightType::Q8_0 => 8,
        }
    }

    /// ggml's file type (`GGML_FTYPE_MOSTLY_*`) plus the quantisation version (2) × 1000, as whisper.cpp
    /// expects in the header.
    pub fn ggml_ftype(self) -> i32 {
        match self {
            WeightType::F16 => 1,
            WeightType::Q8_0 => 2000 + 7,
            WeightType::Q5_0 => 2000 + 8,
            WeightType::Q4_0 => 2000 + 2,
        }
    }

    /// Encodes values; for quantised types `values.len()` must be a multiple of [`BLOCK`].
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            WeightType::F16 => encode_f16(values),
            WeightType::Q8_0 => quantize_q8_0(values),
            WeightType::Q5_0 => quantize_q5_0(values),
            WeightType::Q4_0 => quantize_q4_0(values),
        }
    }
}

/// Little-endian f16 values.
pub fn encode_f16(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| f16::from_f32(*v).to_le_bytes())
        .collect()
}

/// `q8_0` blocks; a trailing partial block is padded with zeros.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len().div_ceil(BLOCK) * 34);
    for block in values.chunks(BLOCK) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        for j in 0..BLOCK {
            let v = block.get(j).copied().unwrap_or(0.0);
            out.push((v * inverse).round() as i8 as u8);
        }
    }
    out
}

/// `values` in blocks of [`BLOCK`], the last one padded with zeros.
fn padded_blocks(values: &[f32]) -> impl Iterator<Item = [f32; BLOCK]> + '_ {
    values.chunks(BLOCK).map(|block| {
        let mut padded = [0.0f32; BLOCK];
        padded[..block.len()].copy_from_slice(block);
        padded
    })
}

/// `q5_0` blocks; a trailing partial block is padded with zeros.
pub fn quantize_q5_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len().div_ceil(BLOCK) * 22);
    for padded in padded_blocks(values) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for v in padded {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qh = 0u32;
        let mut qs = [0u8; 16];
        for j in 0..16 {
            let code = |x: f32| ((x * inverse + 16.5) as i8).min(31) as u8;
            let low = code(padded[j]);
            let high = code(padded[j + 16]);
            qs[j] = (low & 0x0f) | ((high & 0x0f) << 4);
            qh |= u32::from((low & 0x10) >> 4) << j;
            qh |= u32::from((high & 0x10) >> 4) << (j + 16);
        }
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend_from_slice(&qh.to_le_bytes());
        out.extend_from_slice(&qs);
    }
    out
}

/// `q4_0` blocks; a trailing partial block is padded with zeros.
pub fn quantize_q4_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len().div_ceil(BLOCK) * 18);
    for padded in padded_blocks(values) {
        let extreme = padded
            .iter()
            .fold(0.0f32, |m, v| if v.abs() > m.abs() { *v } else { m });
        let d = extreme / -8.0;
        let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
        let code = |x: f32| ((x * inverse + 8.5) as i8).clamp(0, 15) as u8;
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        for j in 0..16 {
            out.push(code(padded[j]) | (code(padded[j + 16]) << 4));
        }
    }
    out
}

/// Decodes `q4_0` blocks (tests and sanity checks).
pub fn dequantize_q4_0(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / 18 * BLOCK);
    for block in bytes.chunks_exact(18) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let mut values = [0.0f32; BLOCK];
        for (j, byte) in block[2..].iter().enumerate() {
            values[j] = (f32::from(byte & 0x0f) - 8.0) * d;
            values[j + 16] = (f32::from(byte >> 4) - 8.0) * d;
        }
        out.extend_from_slice(&values);
    }
    out
}

/// Decodes `q8_0` blocks (tests and sanity checks).
pub fn dequantize_q8_0(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(34)
        .flat_map(|block| {
            let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
            block[2..].iter().map(move |q| f32::from(*q as i8) * d)
        })
        .collect()
}

/// Decodes `q5_0` blocks (tests and sanity checks).
pub fn dequantize_q5_0(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / 22 * BLOCK);
    for block in bytes.chunks_exact(22) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
        let qs = &block[6..];
        let mut values = [0.0f32; BLOCK];
        for j in 0..16 {
            let low = (qs[j] & 0x0f) | ((((qh >> j) & 1) as u8) << 4);
            let high = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
            values[j] = (f32::from(low) - 16.0) * d;
            values[j + 16] = (f32::from(high) - 16.0) * d;
        }
        out.extend_from_slice(&values);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32) * 0.37).sin() * (1.0 + (i % 7) as f32))
            .collect()
    }

    #[test]
    fn q8_0_round_trips_within_half_a_step() {
        let values = wave(96);
        let bytes = quantize_q8_0(&values);
        assert_eq!(bytes.len(), 3 * 34);
        let back = dequantize_q8_0(&bytes);
        for (block, (original, decoded)) in values.chunks(32).zip(back.chunks(32)).enumerate() {
            let step = original.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
            for (a, b) in original.iter().zip(decoded) {
                assert!(
                    (a - b).abs() <= step * 0.51 + 1e-3,
                    "block {block}: {a} vs {b}"
                );
            }
        }
    }

    /// A format whose codes run from `-levels` to `levels - 1` steps of `d = extreme / -levels`: two
    /// blocks round-trip within one step, and the value of largest magnitude maps to code 0 exactly
    /// (`-levels × d = extreme`).
    fn assert_round_trips_within_one_step_and_keeps_the_extreme(
        quantize: fn(&[f32]) -> Vec<u8>,
        dequantize: fn(&[u8]) -> Vec<f32>,
        block_bytes: usize,
        levels: f32,
    ) {
        let values = wave(64);
        let bytes = quantize(&values);
        assert_eq!(bytes.len(), 2 * block_bytes);
        let back = dequantize(&bytes);
        for (original, decoded) in values.chunks(32).zip(back.chunks(32)) {
            let (index, extreme) = original
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .unwrap();
            let step = extreme.abs() / levels;
            assert!((decoded[index] - extreme).abs() <= step * 0.01 + 1e-3);
            for (a, b) in original.iter().zip(decoded) {
                assert!((a - b).abs() <= step * 1.01 + 1e-3, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn q5_0_round_trips_within_one_step_and_keeps_the_extreme() {
        assert_round_trips_within_one_step_and_keeps_the_extreme(
            quantize_q5_0,
            dequantize_q5_0,
            22,
            16.0,
        );
    }

    #[test]
    fn q4_0_round_trips_within_one_step_and_keeps_the_extreme() {
        assert_round_trips_within_one_step_and_keeps_the_extreme(
            quantize_q4_0,
            dequantize_q4_0,
            18,
            8.0,
        );
    }

    #[test]
    fn zero_blocks_stay_zero() {
        assert!(dequantize_q8_0(&quantize_q8_0(&[0.0; 32]))
            .iter()
            .all(|v| *v == 0.0));
        assert!(dequantize_q5_0(&quantize_q5_0(&[0.0; 32]))
            .iter()
            .all(|v| *v == 0.0));
    }
}
