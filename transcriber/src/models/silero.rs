//! Silero VAD (the `silero-vad` PyPI package's `silero_vad_16k.safetensors`) → whisper.cpp's ggml VAD
//! model file.
//!
//! The ggml VAD file: magic; i32-length model type string; i32 version major, minor, patch; i32 window
//! (512 samples) and context (64 samples); i32 encoder layer count and per layer (in, out, kernel); i32
//! LSTM input and hidden sizes; i32 final conv in and out; then tensors as in whisper models (i32 ndim,
//! name length, type, dims innermost first, name, data). Convolution weights and the STFT basis are f16,
//! everything else f32, under the names whisper.cpp gives the PyTorch module's buffers.

use std::collections::BTreeMap;

use super::quantize::encode_f16;

const MAGIC: u32 = 0x6767_6d6c;

/// One tensor of a safetensors file, as f32.
#[derive(Debug, Clone, PartialEq)]
pub struct SafeTensor {
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Values.
    pub values: Vec<f32>,
}

/// Parses a safetensors file holding F32 tensors: u64 header length, JSON header, data.
pub fn parse_safetensors(bytes: &[u8]) -> Result<BTreeMap<String, SafeTensor>, String> {
    let header_len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("slice of 8 bytes")) as usize)
        .ok_or("file shorter than its header length")?;
    let header_end = 8usize
        .checked_add(header_len)
        .filter(|end| *end <= bytes.len())
        .ok_or("header length beyond the end of the file")?;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..header_end])
        .map_err(|error| format!("header is not JSON: {error}"))?;
    let data = &bytes[header_end..];
    let mut tensors = BTreeMap::new();
    let entries = header.as_object().ok_or("header is not a JSON object")?;
    for (name, entry) in entries {
        if name == "__metadata__" {
            continue;
        }
        let dtype = entry["dtype"].as_str().unwrap_or_default();
        if dtype != "F32" {
            return Err(format!("tensor {name} is {dtype}, only F32 is supported"));
        }
        let shape: Vec<usize> = entry["shape"]
            .as_array()
            .ok_or_else(|| format!("tensor {name} has no shape"))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("tensor {name} has a bad shape"))?;
        let offsets = entry["data_offsets"]
            .as_array()
            .and_then(|o| Some((o.first()?.as_u64()? as usize, o.get(1)?.as_u64()? as usize)))
            .ok_or_else(|| format!("tensor {name} has no data offsets"))?;
        let (start, end) = offsets;
        let raw = data
            .get(start..end)
            .ok_or_else(|| format!("tensor {name} lies outside the file"))?;
        let count: usize = shape.iter().product();
        if raw.len() != count * 4 {
            return Err(format!(
                "tensor {name}: {} bytes for {count} values",
                raw.len()
            ));
        }
        let values = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(name.clone(), SafeTensor { shape, values });
    }
    Ok(tensors)
}

/// Converts the Silero 16 kHz safetensors to whisper.cpp's VAD format. `version` is the package
/// version (`6.2.3`), recorded in the header.
pub fn convert(
    tensors: &BTreeMap<String, SafeTensor>,
    version: [i32; 3],
) -> Result<Vec<u8>, String> {
    let get = |name: &str| {
        tensors
            .get(name)
            .ok_or_else(|| format!("missing tensor {name}"))
    };
    let mut out = header(&get, version)?;
    for entry in tensor_table(&get("final_conv.weight")?.shape) {
        write_tensor(&mut out, &entry, get(&entry.source)?);
    }
    Ok(out)
}

fn push_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The header: magic, model type, version, window and context, then the layer sizes read off the tensors.
fn header<'a>(
    get: &impl Fn(&str) -> Result<&'a SafeTensor, String>,
    version: [i32; 3],
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    let model_type = "silero-16k";
    push_i32(&mut out, model_type.len() as i32);
    out.extend_from_slice(model_type.as_bytes());
    for v in version {
        push_i32(&mut out, v);
    }
    push_i32(&mut out, 512); // window, samples
    push_i32(&mut out, 64); // context, samples
    push_i32(&mut out, 4);
    for layer in 1..=4 {
        let shape = &get(&format!("conv{layer}.weight"))?.shape;
        let [out_channels, in_channels, kernel] = shape.as_slice() else {
            return Err(format!("conv{layer}.weight is not 3-D"));
        };
        push_i32(&mut out, *in_channels as i32);
        push_i32(&mut out, *out_channels as i32);
        push_i32(&mut out, *kernel as i32);
    }
    let lstm = &get("lstm_cell.weight_ih")?.shape;
    let [gates, lstm_input] = lstm.as_slice() else {
        return Err("lstm_cell.weight_ih is not 2-D".to_string());
    };
    push_i32(&mut out, *lstm_input as i32);
    push_i32(&mut out, (*gates / 4) as i32);
    let final_conv = &get("final_conv.weight")?.shape;
    push_i32(&mut out, final_conv.get(1).copied().unwrap_or(0) as i32);
    push_i32(&mut out, final_conv.first().copied().unwrap_or(0) as i32);
    Ok(out)
}

/// One tensor of the ggml file and where its values come from.
struct Entry {
    /// whisper.cpp's name.
    name: String,
    /// The safetensors name.
    source: String,
    /// Stored as f16 (else f32).
    half: bool,
    /// Dims innermost first; `None`: the source's shape reversed.
    ne: Option<Vec<i32>>,
}

/// Every tensor whisper.cpp's VAD loader expects, in its order. `final_conv` is the shape of
/// `final_conv.weight` (its kernel dimension is dropped).
fn tensor_table(final_conv: &[usize]) -> Vec<Entry> {
    let entry = |name: &str, source: &str, half: bool| Entry {
        name: name.to_string(),
        source: source.to_string(),
        half,
        ne: None,
    };
    let mut table = vec![entry(
        "_model.stft.forward_basis_buffer",
        "stft_conv.weight",
        true,
    )];
    for layer in 0..4 {
        let source = layer + 1;
        let dst = format!("_model.encoder.{layer}.reparam_conv");
        table.push(entry(
            &format!("{dst}.weight"),
            &format!("conv{source}.weight"),
            true,
        ));
        table.push(entry(
            &format!("{dst}.bias"),
            &format!("conv{source}.bias"),
            false,
        ));
    }
    for part in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
        table.push(entry(
            &format!("_model.decoder.rnn.{part}"),
            &format!("lstm_cell.{part}"),
            false,
        ));
    }
    let final_in = final_conv.get(1).copied().unwrap_or(0) as i32;
    table.push(Entry {
        ne: Some(vec![final_in, 1]),
        ..entry("_model.decoder.decoder.2.weight", "final_conv.weight", true)
    });
    table.push(entry(
        "_model.decoder.decoder.2.bias",
        "final_conv.bias",
        false,
    ));
    table
}

/// Appends one tensor: ndim, name length, type, dims, name, data.
fn write_tensor(out: &mut Vec<u8>, entry: &Entry, tensor: &SafeTensor) {
    let ne = entry
        .ne
        .clone()
        .unwrap_or_else(|| tensor.shape.iter().rev().map(|d| *d as i32).collect());
    push_i32(out, ne.len() as i32);
    push_i32(out, entry.name.len() as i32);
    push_i32(out, i32::from(entry.half));
    for d in &ne {
        push_i32(out, *d);
    }
    out.extend_from_slice(entry.name.as_bytes());
    if entry.half {
        out.extend_from_slice(&encode_f16(&tensor.values));
    } else {
        out.extend(tensor.values.iter().flat_map(|v| v.to_le_bytes()));
    }
}
