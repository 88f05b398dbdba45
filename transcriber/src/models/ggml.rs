//! CTranslate2 Whisper → whisper.cpp ggml conversion, in Rust.
//!
//! The ggml file: magic `0x67676d6c`; ten i32 hyper-parameters read off tensor shapes (n_vocab,
//! n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_text_ctx, n_text_state, n_text_head,
//! n_text_layer, n_mels) and the file type; the mel filterbank (i32 n_mels, i32 201, f32 values); the
//! vocabulary (i32 count, then per token u32 length + raw bytes, ids below `<|endoftext|>`); then tensors
//! (i32 ndim, i32 name length, i32 type, i32 dims innermost first, name, data). whisper.cpp checks every
//! tensor's name, shape and type, and rejects unknown or missing ones, so the name map below is exact.

use std::collections::BTreeMap;

use super::ct2::Model;
use super::mel;
use super::quantize::{encode_f16, WeightType};

const MAGIC: u32 = 0x6767_6d6c;
const F32: i32 = 0;
const F16: i32 = 1;

/// Hyper-parameters of a Whisper model, as whisper.cpp reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HParams {
    /// Vocabulary size (51864 for English-only, 51865 for multilingual models).
    pub n_vocab: i32,
    /// Encoder positions (1500).
    pub n_audio_ctx: i32,
    /// Encoder width.
    pub n_audio_state: i32,
    /// Encoder attention heads.
    pub n_audio_head: i32,
    /// Encoder layers.
    pub n_audio_layer: i32,
    /// Decoder positions (448).
    pub n_text_ctx: i32,
    /// Decoder width.
    pub n_text_state: i32,
    /// Decoder attention heads.
    pub n_text_head: i32,
    /// Decoder layers.
    pub n_text_layer: i32,
    /// Mel bands of the input (80).
    pub n_mels: i32,
}

impl HParams {
    /// True for multilingual models (their vocabulary has the language tokens).
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }
}

/// Reads the hyper-parameters off a CTranslate2 Whisper model.
pub fn hparams(model: &Model) -> Result<HParams, String> {
    let dims = |name: &str| -> Result<Vec<i32>, String> {
        model
            .get(name)
            .map(|v| v.dims.iter().map(|d| *d as i32).collect())
            .ok_or_else(|| format!("missing variable {name}"))
    };
    let scalar = |name: &str| -> Result<i32, String> {
        model
            .get(name)
            .and_then(|v| v.scalar())
            .map(|v| v as i32)
            .ok_or_else(|| format!("missing scalar {name}"))
    };
    let layers = |prefix: &str| {
        (0..)
            .take_while(|layer| {
                let start = format!("{prefix}/layer_{layer}/");
                model.variables.iter().any(|v| v.name.starts_with(&start))
            })
            .count() as i32
    };
    let embeddings = dims("decoder/embeddings/weight")?;
    let audio_positions = dims("encoder/position_encodings/encodings")?;
    let text_positions = dims("decoder/position_encodings/encodings")?;
    let conv1 = dims("encoder/conv1/weight")?;
    let (
        &[n_vocab, _],
        &[n_audio_ctx, n_audio_state],
        &[n_text_ctx, n_text_state],
        &[_, n_mels, _],
    ) = (
        embeddings.as_slice(),
        audio_positions.as_slice(),
        text_positions.as_slice(),
        conv1.as_slice(),
    )
    else {
        return Err("unexpected tensor ranks: not a Whisper model".to_string());
    };
    Ok(HParams {
        n_vocab,
        n_audio_ctx,
        n_audio_state,
        n_audio_head: scalar("encoder/num_heads")?,
        n_audio_layer: layers("encoder"),
        n_text_ctx,
        n_text_state,
        n_text_head: scalar("decoder/num_heads")?,
        n_text_layer: layers("decoder"),
        n_mels,
    })
}

/// GPT-2's byte-level alphabet reversed: each printable stand-in character back to its byte.
fn byte_decoder() -> BTreeMap<char, u8> {
    let mut printable: Vec<u32> = (u32::from('!')..=u32::from('~')).collect();
    printable.extend(u32::from('¡')..=u32::from('¬'));
    printable.extend(u32::from('®')..=u32::from('ÿ'));
    let mut map = BTreeMap::new();
    let mut extra = 0;
    for byte in 0u32..256 {
        let stand_in = if printable.contains(&byte) {
            byte
        } else {
            extra += 1;
            255 + extra
        };
        // Every stand-in is below 0x200, a valid char.
        map.insert(
            char::from_u32(stand_in).expect("stand-ins are below 0x200"),
            byte as u8,
        );
    }
    map
}

/// The token list for the ggml file: tokens below `<|endoftext|>`, decoded from GPT-2's byte-level
/// characters to raw bytes.
pub fn vocabulary_bytes(tokens: &[String]) -> Result<Vec<Vec<u8>>, String> {
    let eot = tokens
        .iter()
        .position(|t| t == "<|endoftext|>")
        .ok_or("the vocabulary has no <|endoftext|> token")?;
    let decoder = byte_decoder();
    tokens[..eot]
        .iter()
        .enumerate()
        .map(|(id, token)| {
            token
                .chars()
                .map(|c| {
                    decoder.get(&c).copied().ok_or_else(|| {
                        format!("token {id} has a character outside the byte alphabet")
                    })
                })
                .collect()
        })
        .collect()
}

/// A tensor ready to be written.
struct Tensor {
    name: String,
    /// Dimensions innermost first (ggml's `ne`).
    ne: Vec<i32>,
    ttype: i32,
    data: Vec<u8>,
}

/// Converts a CTranslate2 Whisper model with its vocabulary (`vocabulary.txt` lines) into a ggml file.
pub fn convert(model: &Model, tokens: &[String], weights: WeightType) -> Result<Vec<u8>, String> {
    if model.spec != "WhisperSpec" {
        return Err(format!("spec {:?} is not WhisperSpec", model.spec));
    }
    let hp = hparams(model)?;
    let vocabulary = vocabulary_bytes(tokens)?;
    let expected_eot = if hp.is_multilingual() { 50257 } else { 50256 };
    if vocabulary.len() != expected_eot {
        return Err(format!(
            "the vocabulary puts <|endoftext|> at {} but a model with {} tokens needs it at {expected_eot}",
            vocabulary.len(),
            hp.n_vocab
        ));
    }

    let mut out = Vec::new();
    let push_i32 = |out: &mut Vec<u8>, v: i32| out.extend_from_slice(&v.to_le_bytes());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    for v in [
        hp.n_vocab,
        hp.n_audio_ctx,
        hp.n_audio_state,
        hp.n_audio_head,
        hp.n_audio_layer,
        hp.n_text_ctx,
        hp.n_text_state,
        hp.n_text_head,
        hp.n_text_layer,
        hp.n_mels,
        weights.ggml_ftype(),
    ] {
        push_i32(&mut out, v);
    }
    let filters = mel::slaney_filters(hp.n_mels as usize, mel::N_FFT_BINS);
    push_i32(&mut out, hp.n_mels);
    push_i32(&mut out, mel::N_FFT_BINS as i32);
    for v in filters {
        out.extend_from_slice(&v.to_le_bytes());
    }
    push_i32(&mut out, vocabulary.len() as i32);
    for token in &vocabulary {
        out.extend_from_slice(&(token.len() as u32).to_le_bytes());
        out.extend_from_slice(token);
    }
    for tensor in tensors(model, &hp, weights)? {
        push_i32(&mut out, tensor.ne.len() as i32);
        push_i32(&mut out, tensor.name.len() as i32);
        push_i32(&mut out, tensor.ttype);
        for dim in &tensor.ne {
            push_i32(&mut out, *dim);
        }
        out.extend_from_slice(tensor.name.as_bytes());
        out.extend_from_slice(&tensor.data);
    }
    Ok(out)
}

/// Builds every tensor whisper.cpp expects, in its names, shapes and types.
fn tensors(model: &Model, hp: &HParams, weights: WeightType) -> Result<Vec<Tensor>, String> {
    let mut out = TensorList {
        model,
        weights,
        tensors: Vec::new(),
    };
    let a = hp.n_audio_state;
    // Encoder front.
    for (index, inputs) in [(1, hp.n_mels), (2, a)] {
        let source = format!("encoder/conv{index}");
        out.tensors.push(Tensor {
            name: format!("encoder.conv{index}.weight"),
            ne: vec![3, inputs, a],
            ttype: F16,
            data: encode_f16(&out.values(&format!("{source}/weight"))?),
        });
        out.f32_from(
            &format!("encoder.conv{index}.bias"),
            &format!("{source}/bias"),
            &[a, 1],
        )?;
    }
    out.f32_from(
        "encoder.positional_embedding",
        "encoder/position_encodings/encodings",
        &[hp.n_audio_ctx, a],
    )?;

    for layer in 0..hp.n_audio_layer {
        out.block("encoder", layer, a, a)?;
    }
    for layer in 0..hp.n_text_layer {
        out.block("decoder", layer, hp.n_text_state, a)?;
    }
    out.norm("encoder/layer_norm", "encoder.ln_post", a)?;

    let t = hp.n_text_state;
    out.f32_from(
        "decoder.positional_embedding",
        "decoder/position_encodings/encodings",
        &[hp.n_text_ctx, t],
    )?;
    let embeddings = out.values("decoder/embeddings/weight")?;
    out.weight("decoder.token_embedding.weight", embeddings, hp.n_vocab, t);
    out.norm("decoder/layer_norm", "decoder.ln", t)?;

    for tensor in &out.tensors {
        check_size(tensor)?;
    }
    Ok(out.tensors)
}

/// The tensors written so far, and where their values come from.
struct TensorList<'a> {
    model: &'a Model,
    weights: WeightType,
    tensors: Vec<Tensor>,
}

impl TensorList<'_> {
    fn values(&self, name: &str) -> Result<Vec<f32>, String> {
        self.model.to_f32(name)
    }

    /// An f32 vector or matrix, PyTorch shape `shape` (outermost first).
    fn f32(&mut self, name: &str, data: Vec<f32>, shape: &[i32]) {
        self.tensors.push(Tensor {
            name: name.to_string(),
            ne: shape.iter().rev().copied().collect(),
            ttype: F32,
            data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
    }

    /// The variable `source` as the f32 tensor `name`.
    fn f32_from(&mut self, name: &str, source: &str, shape: &[i32]) -> Result<(), String> {
        let data = self.values(source)?;
        self.f32(name, data, shape);
        Ok(())
    }

    /// A 2-D weight in the model's weight type.
    fn weight(&mut self, name: &str, data: Vec<f32>, rows: i32, cols: i32) {
        self.tensors.push(Tensor {
            name: name.to_string(),
            ne: vec![cols, rows],
            ttype: self.weights.ggml_type(),
            data: self.weights.encode(&data),
        });
    }

    /// A layer norm: `{from}/gamma`, `{from}/beta` → `{to}.weight`, `{to}.bias`.
    fn norm(&mut self, from: &str, to: &str, d: i32) -> Result<(), String> {
        self.f32_from(&format!("{to}.weight"), &format!("{from}/gamma"), &[d])?;
        self.f32_from(&format!("{to}.bias"), &format!("{from}/beta"), &[d])
    }

    /// A linear layer: `{from}/weight`, `{from}/bias` → `{to}.weight` (rows × cols), `{to}.bias`.
    fn linear(&mut self, from: &str, to: &str, rows: i32, cols: i32) -> Result<(), String> {
        let weight = self.values(&format!("{from}/weight"))?;
        self.weight(&format!("{to}.weight"), weight, rows, cols);
        self.f32_from(&format!("{to}.bias"), &format!("{from}/bias"), &[rows])
    }

    /// The weight and bias of a fused projection `from`, each cut into `N` equal row blocks.
    #[allow(clippy::type_complexity)]
    fn fused<const N: usize>(
        &self,
        from: &str,
        what: &str,
    ) -> Result<([Vec<f32>; N], [Vec<f32>; N]), String> {
        let split = |data: Vec<f32>| -> Option<[Vec<f32>; N]> {
            let size = data.len() / N;
            let parts: Vec<Vec<f32>> = data.chunks(size).map(<[f32]>::to_vec).collect();
            parts.try_into().ok()
        };
        let weight = split(self.values(&format!("{from}/weight"))?);
        let bias = split(self.values(&format!("{from}/bias"))?);
        weight
            .zip(bias)
            .ok_or_else(|| format!("{from} is not a fused {what} projection"))
    }

    /// One transformer block of `side` (`encoder` or `decoder`), width `d`; `a` is the encoder's width
    /// (the decoder's cross-attention reads encoder states).
    fn block(&mut self, side: &str, layer: i32, d: i32, a: i32) -> Result<(), String> {
        let src = format!("{side}/layer_{layer}");
        let dst = format!("{side}.blocks.{layer}");
        // A variable of this layer, and a tensor name of this block.
        let from = |part: &str| format!("{src}/{part}");
        let to = |part: &str| format!("{dst}.{part}");

        // Self-attention: q, k, v fused in linear_0; the key has no bias (CTranslate2 stores zeros).
        self.norm(&from("self_attention/layer_norm"), &to("attn_ln"), d)?;
        let ([query, key, value], [query_bias, _, value_bias]) =
            self.fused(&from("self_attention/linear_0"), "q,k,v")?;
        self.weight(&to("attn.query.weight"), query, d, d);
        self.f32(&to("attn.query.bias"), query_bias, &[d]);
        self.weight(&to("attn.key.weight"), key, d, d);
        self.weight(&to("attn.value.weight"), value, d, d);
        self.f32(&to("attn.value.bias"), value_bias, &[d]);
        self.linear(&from("self_attention/linear_1"), &to("attn.out"), d, d)?;

        if side == "decoder" {
            // Cross-attention: query in linear_0, k and v fused in linear_1, output in linear_2.
            self.norm(&from("attention/layer_norm"), &to("cross_attn_ln"), d)?;
            self.linear(&from("attention/linear_0"), &to("cross_attn.query"), d, d)?;
            let ([key, value], [_, value_bias]) = self.fused(&from("attention/linear_1"), "k,v")?;
            self.weight(&to("cross_attn.key.weight"), key, d, a);
            self.weight(&to("cross_attn.value.weight"), value, d, a);
            self.f32(&to("cross_attn.value.bias"), value_bias, &[d]);
            self.linear(&from("attention/linear_2"), &to("cross_attn.out"), d, d)?;
        }

        self.norm(&from("ffn/layer_norm"), &to("mlp_ln"), d)?;
        self.linear(&from("ffn/linear_0"), &to("mlp.0"), 4 * d, d)?;
        self.linear(&from("ffn/linear_1"), &to("mlp.2"), d, 4 * d)
    }
}

/// Checks that a tensor's data has the size its shape and type need.
fn check_size(tensor: &Tensor) -> Result<(), String> {
    let elements: i64 = tensor.ne.iter().map(|d| i64::from(*d)).product();
    let bytes_expected = match tensor.ttype {
        F32 => elements * 4,
        F16 => elements * 2,
        8 => elements / 32 * 34,
        6 => elements / 32 * 22,
        2 => elements / 32 * 18,
        other => return Err(format!("internal: unknown tensor type {other}")),
    };
    if bytes_expected != tensor.data.len() as i64 {
        return Err(format!(
            "tensor {} has {} bytes but its shape {:?} needs {bytes_expected}",
            tensor.name,
            tensor.data.len(),
            tensor.ne
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "ggml_tests.rs"]
mod tests;
