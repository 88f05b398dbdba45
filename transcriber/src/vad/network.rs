//! Silero VAD's 16 kHz network (the v5 architecture, which the `silero-vad` 6.x package still ships), run in
//! plain Rust: one speech probability per 512-sample frame.
//!
//! Weights come from the ggml VAD file that `calls-transcriber models fetch` writes (see
//! [`crate::models::silero`]), and the forward pass computes what whisper.cpp's ggml graph computes: each
//! frame on its own is reflect-padded by 64 samples on both sides, turned into 4 STFT columns (256-sample
//! Hann-windowed DFT, hop 128) whose magnitudes go through four convolutions with ReLU (129 → 128 → 64 →
//! 64 → 128 channels, kernel 3, strides 1, 2, 2, 1), an LSTM cell whose state carries over from frame to
//! frame, ReLU, a 1×1 convolution and a sigmoid.
//!
//! Only the LSTM's recurrence depends on the previous frame, so everything before it runs on a batch of
//! frames at once as matrix products against weights stored pre-transposed in column panels (each panel
//! stays in cache while the batch streams past it). The STFT is an FFT: the file's STFT basis is checked on
//! load to be the windowed DFT it is in Silero, and its window is taken from it.

use std::collections::BTreeMap;
use std::sync::Arc;

use half::f16;
use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

use crate::models::bytes::Reader;

/// Samples per frame, one probability each (32 ms at 16 kHz).
pub const FRAME: usize = 512;
/// Reflected samples added on each side of a frame.
const PAD: usize = 64;
/// STFT length and hop.
const FFT_LEN: usize = 256;
const HOP: usize = 128;
/// STFT columns per padded frame: (512 + 2·64 − 256) / 128 + 1.
const COLUMNS: usize = (FRAME + 2 * PAD - FFT_LEN) / HOP + 1;
/// Frequency bins of the STFT (0 to Nyquist).
const BINS: usize = FFT_LEN / 2 + 1;
/// LSTM hidden size, and its four gates (input, forget, cell, output).
const HIDDEN: usize = 128;
const GATES: usize = 4 * HIDDEN;
/// Frames run through the convolutions together.
const BATCH: usize = 32;
/// Output columns per weight panel, the width of the matrix kernel's accumulators.
const LANES: usize = 16;
/// Rows the matrix kernel computes at once.
const ROWS: usize = 4;
const MAGIC: u32 = 0x6767_6d6c;

/// The convolution layers: input channels, output channels, stride (kernel 3 and padding 1 for all).
const ENCODER: [(usize, usize, usize); 4] =
    [(BINS, 128, 1), (128, 64, 2), (64, 64, 2), (64, 128, 1)];

/// A weight matrix `depth × width` stored as `width / LANES` panels of `depth × LANES`, row-major.
struct Panels {
    depth: usize,
    width: usize,
    values: Vec<f32>,
}

impl Panels {
    /// `weight(k, n)` is the matrix entry at row `k`, column `n`.
    fn new(depth: usize, width: usize, weight: impl Fn(usize, usize) -> f32) -> Self {
        let mut values = Vec::with_capacity(depth * width);
        for panel in 0..width / LANES {
            for k in 0..depth {
                values.extend((0..LANES).map(|lane| weight(k, panel * LANES + lane)));
            }
        }
        Panels {
            depth,
            width,
            values,
        }
    }

    /// `out[m][n] = bias[n] + Σ_k x[m][k] · self[k][n]` for every row `m` of `x` (`rows × depth`), with
    /// ReLU when `relu`.
    fn multiply(&self, x: &[f32], bias: &[f32], relu: bool, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            #[allow(unsafe_code)]
            // SAFETY: the function only needs AVX2 and FMA, which this CPU has (checked above).
            unsafe {
                self.multiply_avx2(x, bias, relu, out)
            };
            return;
        }
        self.multiply_with::<false>(x, bias, relu, out);
    }

    /// [`Self::multiply`] compiled for AVX2 with fused multiply-adds: twice the lanes of the x86-64
    /// baseline (SSE2) and enough registers for all accumulators. The transcriber needs such a CPU anyway
    /// (whisper.cpp is built for it, see .cargo/config.toml).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn multiply_avx2(&self, x: &[f32], bias: &[f32], relu: bool, out: &mut [f32]) {
        self.multiply_with::<true>(x, bias, relu, out);
    }

    /// The product, with `mul_add` when `FMA` (only where the CPU has it: else it is a slow library call).
    #[inline(always)]
    fn multiply_with<const FMA: bool>(&self, x: &[f32], bias: &[f32], relu: bool, out: &mut [f32]) {
        let rows = x.len() / self.depth;
        for (panel, weights) in self.values.chunks_exact(self.depth * LANES).enumerate() {
            // The slice is LANES long, so the conversion cannot fail.
            let bias: &[f32; LANES] = bias[panel * LANES..][..LANES]
                .try_into()
                .expect("a slice of LANES values");
            let mut m = 0;
            while m + ROWS <= rows {
                self.block::<ROWS, FMA>(x, m, weights, bias, relu, panel, out);
                m += ROWS;
            }
            while m < rows {
                self.block::<1, FMA>(x, m, weights, bias, relu, panel, out);
                m += 1;
            }
        }
    }

    /// Rows `m..m + R` of one panel's columns.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn block<const R: usize, const FMA: bool>(
        &self,
        x: &[f32],
        m: usize,
        weights: &[f32],
        bias: &[f32; LANES],
        relu: bool,
        panel: usize,
        out: &mut [f32],
    ) {
        let depth = self.depth;
        let xs: [&[f32]; R] = std::array::from_fn(|r| &x[(m + r) * depth..][..depth]);
        let acc = accumulate::<R, FMA>(xs, &weights[..depth * LANES], bias);
        for (r, acc) in acc.iter().enumerate() {
            let at = (m + r) * self.width + panel * LANES;
            let dst = &mut out[at..at + LANES];
            if relu {
                for (d, a) in dst.iter_mut().zip(acc) {
                    *d = a.max(0.0);
                }
            } else {
                dst.copy_from_slice(acc);
            }
        }
    }
}

/// `bias + Σ_k xs[r][k] · weights[k]` for each of the `R` rows, over one panel. A function of its own
/// returning the accumulators: so the compiler keeps them in vector registers (it does not when they
/// are stored to `out` in the same function).
#[inline(always)]
fn accumulate<const R: usize, const FMA: bool>(
    xs: [&[f32]; R],
    weights: &[f32],
    bias: &[f32; LANES],
) -> [[f32; LANES]; R] {
    let mut acc = [*bias; R];
    for (k, w) in weights.chunks_exact(LANES).enumerate() {
        // chunks_exact(LANES) yields LANES values each, so the conversion cannot fail.
        let w: &[f32; LANES] = w.try_into().expect("chunks of LANES values");
        for r in 0..R {
            let v = xs[r][k];
            let acc = &mut acc[r];
            for j in 0..LANES {
                acc[j] = if FMA {
                    v.mul_add(w[j], acc[j])
                } else {
                    acc[j] + v * w[j]
                };
            }
        }
    }
    acc
}

/// One convolution layer (kernel 3, padding 1) as a matrix over im2col rows `[x[t−1], x[t], x[t+1]]`.
struct Conv {
    in_channels: usize,
    stride: usize,
    weights: Panels,
    bias: Vec<f32>,
}

impl Conv {
    fn out_len(&self, len: usize) -> usize {
        (len - 1) / self.stride + 1
    }

    /// `input`: `frames` blocks of `len` columns of `in_channels`; `out` gets `frames` blocks of
    /// `out_len(len)` columns, after ReLU.
    fn forward(
        &self,
        input: &[f32],
        frames: usize,
        len: usize,
        im2col: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) {
        let channels = self.in_channels;
        let out_len = self.out_len(len);
        im2col.clear();
        for frame in input.chunks_exact(len * channels).take(frames) {
            for t in 0..out_len {
                for tap in 0..3 {
                    match (t * self.stride + tap)
                        .checked_sub(1)
                        .filter(|at| *at < len)
                    {
                        Some(at) => im2col.extend_from_slice(&frame[at * channels..][..channels]),
                        None => im2col.extend(std::iter::repeat_n(0.0, channels)),
                    }
                }
            }
        }
        out.resize(frames * out_len * self.weights.width, 0.0);
        self.weights.multiply(im2col, &self.bias, true, out);
    }
}

/// The network's weights, read from a ggml VAD file.
pub struct Network {
    /// The STFT window ([`FFT_LEN`] values).
    window: Vec<f32>,
    fft: Arc<dyn Fft<f32>>,
    encoder: Vec<Conv>,
    /// `weight_ih` transposed, with both LSTM biases summed.
    input_gates: Panels,
    gate_bias: Vec<f32>,
    /// `weight_hh` transposed.
    hidden_gates: Panels,
    /// The output convolution ([`HIDDEN`] values).
    final_weight: Vec<f32>,
    final_bias: f32,
}

/// The buffers of a run, kept from run to run so a run allocates nothing once they have grown.
#[derive(Default)]
pub struct Scratch {
    spectrum: Vec<Complex32>,
    fft_scratch: Vec<Complex32>,
    a: Vec<f32>,
    b: Vec<f32>,
    im2col: Vec<f32>,
    gates: Vec<f32>,
}

impl Network {
    /// Reads the network from the bytes of a ggml VAD file; the error says what is wrong with it.
    pub fn from_ggml(bytes: &[u8]) -> Result<Self, String> {
        let mut tensors = read_ggml(bytes)?;
        let mut take = |name: &str, shape: &[usize]| -> Result<Vec<f32>, String> {
            let (found, values) = tensors
                .remove(name)
                .ok_or_else(|| format!("tensor {name} is missing"))?;
            if found != shape {
                return Err(format!(
                    "tensor {name} has shape {found:?}, expected {shape:?}"
                ));
            }
            Ok(values)
        };
        let basis = take("_model.stft.forward_basis_buffer", &[FFT_LEN, 1, 2 * BINS])?;
        let window = stft_window(&basis)?;
        let mut encoder = Vec::new();
        for (layer, &(in_channels, out_channels, stride)) in ENCODER.iter().enumerate() {
            let name = format!("_model.encoder.{layer}.reparam_conv");
            // PyTorch's [out][in][tap]; the im2col rows are [tap][in].
            let w = take(&format!("{name}.weight"), &[3, in_channels, out_channels])?;
            let bias = take(&format!("{name}.bias"), &[out_channels])?;
            let weights = Panels::new(3 * in_channels, out_channels, |k, o| {
                let (tap, c) = (k / in_channels, k % in_channels);
                w[(o * in_channels + c) * 3 + tap]
            });
            encoder.push(Conv {
                in_channels,
                stride,
                weights,
                bias,
            });
        }
        let w_ih = take("_model.decoder.rnn.weight_ih", &[HIDDEN, GATES])?;
        let w_hh = take("_model.decoder.rnn.weight_hh", &[HIDDEN, GATES])?;
        let b_ih = take("_model.decoder.rnn.bias_ih", &[GATES])?;
        let b_hh = take("_model.decoder.rnn.bias_hh", &[GATES])?;
        let final_weight = take("_model.decoder.decoder.2.weight", &[HIDDEN, 1])?;
        let final_bias = take("_model.decoder.decoder.2.bias", &[1])?;
        Ok(Network {
            window,
            fft: FftPlanner::new().plan_fft_forward(FFT_LEN),
            encoder,
            input_gates: Panels::new(HIDDEN, GATES, |k, g| w_ih[g * HIDDEN + k]),
            gate_bias: b_ih.iter().zip(&b_hh).map(|(a, b)| a + b).collect(),
            hidden_gates: Panels::new(HIDDEN, GATES, |k, g| w_hh[g * HIDDEN + k]),
            final_weight,
            final_bias: final_bias[0],
        })
    }

    /// The speech probability of every 512-sample frame of `samples`, the last one zero-padded, into
    /// `probs`. The LSTM starts from zero state.
    pub fn probabilities(&self, samples: &[f32], scratch: &mut Scratch, probs: &mut Vec<f32>) {
        probs.clear();
        let mut hidden = [0f32; HIDDEN];
        let mut cell = [0f32; HIDDEN];
        let mut frame_buf = [0f32; FRAME];
        for batch in samples.chunks(BATCH * FRAME) {
            let frames = batch.len().div_ceil(FRAME);
            // STFT magnitudes: `frames` blocks of COLUMNS × BINS.
            scratch.spectrum.clear();
            for frame in batch.chunks(FRAME) {
                frame_buf[..frame.len()].copy_from_slice(frame);
                frame_buf[frame.len()..].fill(0.0);
                let padded = |i: usize| -> f32 {
                    // Reflection without repeating the edge sample.
                    let at = i as isize - PAD as isize;
                    let at = if at < 0 {
                        -at
                    } else if at >= FRAME as isize {
                        2 * (FRAME as isize - 1) - at
                    } else {
                        at
                    };
                    frame_buf[at as usize]
                };
                for column in 0..COLUMNS {
                    scratch.spectrum.extend(
                        (0..FFT_LEN).map(|n| {
                            Complex32::new(padded(column * HOP + n) * self.window[n], 0.0)
                        }),
                    );
                }
            }
            scratch
                .fft_scratch
                .resize(self.fft.get_inplace_scratch_len(), Complex32::default());
            self.fft
                .process_with_scratch(&mut scratch.spectrum, &mut scratch.fft_scratch);
            scratch.a.clear();
            for column in scratch.spectrum.chunks_exact(FFT_LEN) {
                scratch
                    .a
                    .extend(column[..BINS].iter().map(|c| c.norm_sqr().sqrt()));
            }
            // The encoder, alternating between the two buffers.
            let mut len = COLUMNS;
            for conv in &self.encoder {
                conv.forward(&scratch.a, frames, len, &mut scratch.im2col, &mut scratch.b);
                len = conv.out_len(len);
                std::mem::swap(&mut scratch.a, &mut scratch.b);
            }
            // The encoder's last layer has one column per frame (ggml's `[:, :, 0]` takes the first).
            let channels = self.input_gates.depth;
            scratch.b.clear();
            for frame in scratch.a.chunks_exact(len * channels) {
                scratch.b.extend_from_slice(&frame[..channels]);
            }
            scratch.gates.resize(frames * GATES, 0.0);
            self.input_gates
                .multiply(&scratch.b, &self.gate_bias, false, &mut scratch.gates);
            let mut recurrent = [0f32; GATES];
            for input in scratch.gates.chunks_exact(GATES) {
                self.hidden_gates
                    .multiply(&hidden, input, false, &mut recurrent);
                let (i, rest) = recurrent.split_at(HIDDEN);
                let (f, rest) = rest.split_at(HIDDEN);
                let (g, o) = rest.split_at(HIDDEN);
                let mut logit = self.final_bias;
                for j in 0..HIDDEN {
                    cell[j] = sigmoid(f[j]) * cell[j] + sigmoid(i[j]) * tanh(g[j]);
                    hidden[j] = sigmoid(o[j]) * tanh(cell[j]);
                    logit += hidden[j].max(0.0) * self.final_weight[j];
                }
                probs.push(sigmoid(logit));
            }
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// tanh through `exp`, which is several times faster than the library's `tanhf` and as exact as the
/// network needs (absolute error around 1e-7; ±1 where `exp` overflows or vanishes).
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / ((2.0 * x).exp() + 1.0)
}

/// The window of Silero's STFT basis (`[re_0..re_128, im_0..im_128]` rows of 256 taps: the window times
/// cos and −sin of the DFT), after checking that the basis is that, within f16 rounding.
fn stft_window(basis: &[f32]) -> Result<Vec<f32>, String> {
    let window = basis[..FFT_LEN].to_vec();
    for bin in 0..BINS {
        for n in 0..FFT_LEN {
            let phase = 2.0 * std::f64::consts::PI * ((bin * n) % FFT_LEN) as f64 / FFT_LEN as f64;
            let w = f64::from(window[n]);
            let re = f64::from(basis[bin * FFT_LEN + n]);
            let im = f64::from(basis[(BINS + bin) * FFT_LEN + n]);
            if (re - w * phase.cos()).abs() > 2e-3 || (im + w * phase.sin()).abs() > 2e-3 {
                return Err(format!(
                    "the STFT basis is not a windowed DFT (bin {bin}, tap {n})"
                ));
            }
        }
    }
    Ok(window)
}

/// Tensors by name: dims (innermost first) and values.
type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// The tensors of a ggml VAD file by name: dims (innermost first) and values as f32. Checks the header
/// describes Silero v5's 16 kHz layout.
fn read_ggml(bytes: &[u8]) -> Result<Tensors, String> {
    let mut reader = Reader::new(bytes);
    if reader.u32()? != MAGIC {
        return Err("not a ggml file (bad magic)".to_string());
    }
    let type_len = reader.count()?;
    let model_type = reader.take(type_len)?;
    if model_type != b"silero-16k" {
        return Err(format!(
            "model type {:?}, expected silero-16k",
            String::from_utf8_lossy(model_type)
        ));
    }
    let _version = [reader.i32()?, reader.i32()?, reader.i32()?];
    let (window, _context) = (reader.count()?, reader.count()?);
    if window != FRAME {
        return Err(format!("window of {window} samples, expected {FRAME}"));
    }
    let layers = reader.count()?;
    let mut shape = Vec::new();
    for _ in 0..layers * 3 + 4 {
        shape.push(reader.count()?);
    }
    let mut expected: Vec<usize> = ENCODER.iter().flat_map(|&(i, o, _)| [i, o, 3]).collect();
    expected.extend([HIDDEN, HIDDEN, HIDDEN, 1]);
    if layers != ENCODER.len() || shape != expected {
        return Err(format!(
            "layer sizes {layers} {shape:?}, expected Silero v5's {} {expected:?}",
            ENCODER.len()
        ));
    }
    let mut tensors = BTreeMap::new();
    while reader.remaining() > 0 {
        let dims = reader.count()?;
        let name_len = reader.count()?;
        let kind = reader.i32()?;
        let mut ne = Vec::new();
        for _ in 0..dims.min(4) {
            ne.push(reader.count()?);
        }
        let name = String::from_utf8_lossy(reader.take(name_len)?).into_owned();
        let count: usize = ne.iter().product();
        let values = match kind {
            0 => reader
                .take(count * 4)?
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            1 => reader
                .take(count * 2)?
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(format!(
                    "tensor {name} has type {other}, expected f32 or f16"
                ))
            }
        };
        tensors.insert(name, (ne, values));
    }
    Ok(tensors)
}
