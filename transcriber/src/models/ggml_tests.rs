//! The converter on a small synthetic CTranslate2 Whisper model: every tensor whisper.cpp expects is
//! written under its name, shape and type, fused projections are split correctly, and whisper.cpp itself
//! loads the result.

use std::collections::BTreeMap;

use half::f16;

use super::*;
use crate::models::ct2::{self, DType, Variable};
use crate::models::quantize;

const D: u32 = 64;
const N_MELS: u32 = 80;
const AUDIO_CTX: u32 = 8;
const TEXT_CTX: u32 = 8;
const N_VOCAB: u32 = 51864; // English-only size: <|endoftext|> at 50256

/// Deterministic values that differ per variable and position.
fn values(seed: usize, count: usize) -> Vec<f32> {
    (0..count)
        .map(|i| (((seed * 7919 + i * 104_729) % 2001) as f32 - 1000.0) / 4000.0)
        .collect()
}

fn f16_variable(name: &str, dims: &[u32], seed: usize) -> Variable {
    let count = dims.iter().product::<u32>() as usize;
    Variable {
        name: name.to_string(),
        dims: dims.to_vec(),
        dtype: DType::F16,
        data: values(seed, count)
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
    }
}

fn scalar(name: &str, value: i16) -> Variable {
    Variable {
        name: name.to_string(),
        dims: vec![],
        dtype: DType::I16,
        data: value.to_le_bytes().to_vec(),
    }
}

/// A Whisper-shaped CTranslate2 model with one encoder and one decoder layer.
pub(crate) fn synthetic_model() -> ct2::Model {
    let mut vars = Vec::new();
    let mut seed = 0;
    let mut add = |vars: &mut Vec<Variable>, name: &str, dims: &[u32]| {
        seed += 1;
        vars.push(f16_variable(name, dims, seed));
    };
    vars.push(scalar("encoder/num_heads", 2));
    vars.push(scalar("decoder/num_heads", 2));
    add(&mut vars, "encoder/conv1/weight", &[D, N_MELS, 3]);
    add(&mut vars, "encoder/conv1/bias", &[D]);
    add(&mut vars, "encoder/conv2/weight", &[D, D, 3]);
    add(&mut vars, "encoder/conv2/bias", &[D]);
    add(
        &mut vars,
        "encoder/position_encodings/encodings",
        &[AUDIO_CTX, D],
    );
    add(
        &mut vars,
        "decoder/position_encodings/encodings",
        &[TEXT_CTX, D],
    );
    add(&mut vars, "decoder/embeddings/weight", &[N_VOCAB, D]);
    for side in ["encoder", "decoder"] {
        let p = format!("{side}/layer_0");
        for norm in ["self_attention/layer_norm", "ffn/layer_norm"] {
            add(&mut vars, &format!("{p}/{norm}/gamma"), &[D]);
            add(&mut vars, &format!("{p}/{norm}/beta"), &[D]);
        }
        add(
            &mut vars,
            &format!("{p}/self_attention/linear_0/weight"),
            &[3 * D, D],
        );
        add(
            &mut vars,
            &format!("{p}/self_attention/linear_0/bias"),
            &[3 * D],
        );
        add(
            &mut vars,
            &format!("{p}/self_attention/linear_1/weight"),
            &[D, D],
        );
        add(
            &mut vars,
            &format!("{p}/self_attention/linear_1/bias"),
            &[D],
        );
        add(&mut vars, &format!("{p}/ffn/linear_0/weight"), &[4 * D, D]);
        add(&mut vars, &format!("{p}/ffn/linear_0/bias"), &[4 * D]);
        add(&mut vars, &format!("{p}/ffn/linear_1/weight"), &[D, 4 * D]);
        add(&mut vars, &format!("{p}/ffn/linear_1/bias"), &[D]);
        if side == "decoder" {
            add(&mut vars, &format!("{p}/attention/layer_norm/gamma"), &[D]);
            add(&mut vars, &format!("{p}/attention/layer_norm/beta"), &[D]);
            add(
                &mut vars,
                &format!("{p}/attention/linear_0/weight"),
                &[D, D],
            );
            add(&mut vars, &format!("{p}/attention/linear_0/bias"), &[D]);
            add(
                &mut vars,
                &format!("{p}/attention/linear_1/weight"),
                &[2 * D, D],
            );
            add(&mut vars, &format!("{p}/attention/linear_1/bias"), &[2 * D]);
            add(
                &mut vars,
                &format!("{p}/attention/linear_2/weight"),
                &[D, D],
            );
            add(&mut vars, &format!("{p}/attention/linear_2/bias"), &[D]);
        }
    }
    add(&mut vars, "encoder/layer_norm/gamma", &[D]);
    add(&mut vars, "encoder/layer_norm/beta", &[D]);
    add(&mut vars, "decoder/layer_norm/gamma", &[D]);
    add(&mut vars, "decoder/layer_norm/beta", &[D]);
    ct2::Model {
        version: 6,
        spec: "WhisperSpec".to_string(),
        revision: 3,
        variables: vars,
        aliases: vec![(
            "decoder/projection/weight".to_string(),
            "decoder/embeddings/weight".to_string(),
        )],
    }
}

/// GPT-2 style vocabulary lines: byte-level characters, `Ġ` for a space, special tokens at the end.
pub(crate) fn synthetic_vocabulary() -> Vec<String> {
    let mut tokens: Vec<String> = (0..50256).map(|i| format!("t{i}")).collect();
    tokens[0] = "!".to_string();
    tokens[1] = "Ġthe".to_string();
    tokens[2] = "ĊĊ".to_string();
    tokens.push("<|endoftext|>".to_string());
    while tokens.len() < N_VOCAB as usize {
        tokens.push(format!("<|special{}|>", tokens.len()));
    }
    tokens
}

/// A parsed ggml tensor: (type, ne, data).
type Tensors = BTreeMap<String, (i32, Vec<i32>, Vec<u8>)>;

/// Reads a ggml whisper file back: header values, vocabulary and tensors.
fn read_back(bytes: &[u8]) -> (Vec<i32>, Vec<Vec<u8>>, Tensors) {
    let mut at = 0;
    let i32_at = |at: &mut usize| {
        let v = i32::from_le_bytes(bytes[*at..*at + 4].try_into().unwrap());
        *at += 4;
        v
    };
    assert_eq!(i32_at(&mut at) as u32, 0x6767_6d6c);
    let header: Vec<i32> = (0..11).map(|_| i32_at(&mut at)).collect();
    let n_mel = i32_at(&mut at);
    let n_fft = i32_at(&mut at);
    assert_eq!((n_mel, n_fft), (80, 201));
    at += (n_mel * n_fft * 4) as usize;
    let count = i32_at(&mut at);
    let mut vocabulary = Vec::new();
    for _ in 0..count {
        let len = i32_at(&mut at) as usize;
        vocabulary.push(bytes[at..at + len].to_vec());
        at += len;
    }
    let mut tensors = BTreeMap::new();
    while at < bytes.len() {
        let ndim = i32_at(&mut at);
        let name_len = i32_at(&mut at) as usize;
        let ttype = i32_at(&mut at);
        let ne: Vec<i32> = (0..ndim).map(|_| i32_at(&mut at)).collect();
        let name = String::from_utf8(bytes[at..at + name_len].to_vec()).unwrap();
        at += name_len;
        let elements: usize = ne.iter().map(|d| *d as usize).product();
        let size = match ttype {
            0 => elements * 4,
            1 => elements * 2,
            8 => elements / 32 * 34,
            6 => elements / 32 * 22,
            other => panic!("type {other}"),
        };
        tensors.insert(name, (ttype, ne, bytes[at..at + size].to_vec()));
        at += size;
    }
    (header, vocabulary, tensors)
}

fn f16_values(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect()
}

fn f32_values(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn the_ct2_file_round_trips_through_parse() {
    let model = synthetic_model();
    let bytes = ct2::write(&model);
    assert_eq!(ct2::parse(&bytes).unwrap(), model);
    let error = ct2::parse(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(error.contains("truncated"), "{error}");
}

#[test]
fn conversion_writes_every_tensor_whisper_cpp_expects() {
    let model = ct2::parse(&ct2::write(&synthetic_model())).unwrap();
    let bytes = convert(&model, &synthetic_vocabulary(), WeightType::F16).unwrap();
    let (header, vocabulary, tensors) = read_back(&bytes);
    let d = D as i32;
    assert_eq!(header, vec![51864, 8, d, 2, 1, 8, d, 2, 1, 80, 1]);
    assert_eq!(vocabulary.len(), 50256);
    assert_eq!(vocabulary[1], b" the");
    assert_eq!(vocabulary[2], b"\n\n");

    let mut expected: Vec<String> = [
        "encoder.conv1.weight",
        "encoder.conv1.bias",
        "encoder.conv2.weight",
        "encoder.conv2.bias",
        "encoder.positional_embedding",
        "encoder.ln_post.weight",
        "encoder.ln_post.bias",
        "decoder.positional_embedding",
        "decoder.token_embedding.weight",
        "decoder.ln.weight",
        "decoder.ln.bias",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for side in ["encoder", "decoder"] {
        let mut names = vec![
            "attn_ln.weight",
            "attn_ln.bias",
            "attn.query.weight",
            "attn.query.bias",
            "attn.key.weight",
            "attn.value.weight",
            "attn.value.bias",
            "attn.out.weight",
            "attn.out.bias",
            "mlp_ln.weight",
            "mlp_ln.bias",
            "mlp.0.weight",
            "mlp.0.bias",
            "mlp.2.weight",
            "mlp.2.bias",
        ];
        if side == "decoder" {
            names.extend([
                "cross_attn_ln.weight",
                "cross_attn_ln.bias",
                "cross_attn.query.weight",
                "cross_attn.query.bias",
                "cross_attn.key.weight",
                "cross_attn.value.weight",
                "cross_attn.value.bias",
                "cross_attn.out.weight",
                "cross_attn.out.bias",
            ]);
        }
        expected.extend(names.iter().map(|n| format!("{side}.blocks.0.{n}")));
    }
    let mut written: Vec<String> = tensors.keys().cloned().collect();
    expected.sort();
    written.sort();
    assert_eq!(written, expected);

    // Shapes (innermost first) and types as whisper.cpp declares them.
    assert_eq!(tensors["encoder.conv1.weight"].0, 1);
    assert_eq!(tensors["encoder.conv1.weight"].1, vec![3, 80, d]);
    assert_eq!(tensors["encoder.conv1.bias"].0, 0);
    assert_eq!(tensors["encoder.conv1.bias"].1, vec![1, d]);
    assert_eq!(tensors["encoder.positional_embedding"].1, vec![d, 8]);
    assert_eq!(tensors["decoder.token_embedding.weight"].1, vec![d, 51864]);
    assert_eq!(tensors["decoder.blocks.0.mlp.0.weight"].1, vec![d, 4 * d]);
    assert_eq!(tensors["decoder.blocks.0.mlp.2.weight"].1, vec![4 * d, d]);
    assert_eq!(tensors["decoder.blocks.0.attn_ln.weight"].0, 0);

    // The fused q,k,v projection is split by rows; the key's bias slice is dropped.
    let fused = model
        .to_f32("encoder/layer_0/self_attention/linear_0/weight")
        .unwrap();
    let rows = (D * D) as usize;
    let key = f16_values(&tensors["encoder.blocks.0.attn.key.weight"].2);
    assert_eq!(key, fused[rows..2 * rows]);
    let value = f16_values(&tensors["encoder.blocks.0.attn.value.weight"].2);
    assert_eq!(value, fused[2 * rows..]);
    let fused_bias = model
        .to_f32("encoder/layer_0/self_attention/linear_0/bias")
        .unwrap();
    let value_bias = f32_values(&tensors["encoder.blocks.0.attn.value.bias"].2);
    assert_eq!(value_bias, fused_bias[2 * D as usize..]);
    // Cross-attention k,v likewise; the encoder's final norm is ln_post, not a layer's norm.
    let kv = model
        .to_f32("decoder/layer_0/attention/linear_1/weight")
        .unwrap();
    assert_eq!(
        f16_values(&tensors["decoder.blocks.0.cross_attn.value.weight"].2),
        kv[rows..]
    );
    assert_eq!(
        f32_values(&tensors["encoder.ln_post.weight"].2),
        model.to_f32("encoder/layer_norm/gamma").unwrap()
    );
}

#[test]
fn quantised_conversion_quantises_only_the_matrices() {
    let model = synthetic_model();
    let bytes = convert(&model, &synthetic_vocabulary(), WeightType::Q8_0).unwrap();
    let (header, _, tensors) = read_back(&bytes);
    assert_eq!(header[10], 2007);
    assert_eq!(tensors["decoder.blocks.0.mlp.0.weight"].0, 8);
    assert_eq!(tensors["decoder.token_embedding.weight"].0, 8);
    assert_eq!(tensors["encoder.conv2.weight"].0, 1);
    assert_eq!(tensors["decoder.positional_embedding"].0, 0);
    let back = quantize::dequantize_q8_0(&tensors["encoder.blocks.0.mlp.2.weight"].2);
    let original = model.to_f32("encoder/layer_0/ffn/linear_1/weight").unwrap();
    let worst = back
        .iter()
        .zip(&original)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 0.25 / 127.0 + 1e-3, "{worst}");
}

#[test]
fn int8_weights_are_dequantised_with_their_row_scales() {
    let mut model = synthetic_model();
    let index = model
        .variables
        .iter()
        .position(|v| v.name == "encoder/layer_0/ffn/linear_1/weight")
        .unwrap();
    let rows = D as usize;
    let cols = 4 * D as usize;
    let quantised: Vec<u8> = (0..rows * cols)
        .map(|i| ((i % 200) as i32 - 100) as i8 as u8)
        .collect();
    model.variables[index] = Variable {
        name: "encoder/layer_0/ffn/linear_1/weight".to_string(),
        dims: vec![D, 4 * D],
        dtype: DType::I8,
        data: quantised,
    };
    let scales: Vec<f32> = (0..rows).map(|r| 100.0 + r as f32).collect();
    model.variables.push(Variable {
        name: "encoder/layer_0/ffn/linear_1/weight_scale".to_string(),
        dims: vec![D],
        dtype: DType::F32,
        data: scales.iter().flat_map(|v| v.to_le_bytes()).collect(),
    });
    let values = model.to_f32("encoder/layer_0/ffn/linear_1/weight").unwrap();
    assert_eq!(values[0], -100.0 / 100.0);
    assert_eq!(
        values[cols + 1],
        (((cols + 1) % 200) as f32 - 100.0) / 101.0
    );
}

#[test]
fn a_vocabulary_that_does_not_match_the_model_is_rejected() {
    let mut tokens = synthetic_vocabulary();
    tokens.remove(5);
    let error = convert(&synthetic_model(), &tokens, WeightType::F16).unwrap_err();
    assert!(error.contains("<|endoftext|>"), "{error}");
    let error = vocabulary_bytes(&["a".to_string()]).unwrap_err();
    assert!(error.contains("no <|endoftext|>"), "{error}");
}

#[test]
fn whisper_cpp_loads_the_converted_synthetic_model() {
    let dir = tempfile::tempdir().unwrap();
    for weights in [
        WeightType::F16,
        WeightType::Q8_0,
        WeightType::Q5_0,
        WeightType::Q4_0,
    ] {
        let path = dir
            .path()
            .join(format!("ggml-synthetic{}.bin", weights.suffix()));
        let bytes = convert(&synthetic_model(), &synthetic_vocabulary(), weights).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let engine = crate::engine::Engine::load(&path);
        assert!(engine.is_ok(), "{weights:?}: {:?}", engine.err());
        assert!(!crate::engine::SpeechEngine::is_multilingual(
            &engine.unwrap()
        ));
    }
}
