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
    let mut out = Vec::new();
    let push = |out: &mut Vec<u8>, v: i32| out.extend_from_slice(&v.to_le_bytes());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    let model_type = "silero-16k";
    push(&mut out, model_type.len() as i32);
    out.extend_from_slice(model_type.as_bytes());
    for v in version {
        push(&mut out, v);
    }
    push(&mut out, 512); // window, samples
    push(&mut out, 64); // context, samples
    push(&mut out, 4);
    for layer in 1..=4 {
        let shape = &get(&format!("conv{layer}.weight"))?.shape;
        let [out_channels, in_channels, kernel] = shape.as_slice() else {
            return Err(format!("conv{layer}.weight is not 3-D"));
        };
        push(&mut out, *in_channels as i32);
        push(&mut out, *out_channels as i32);
        push(&mut out, *kernel as i32);
    }
    let lstm = &get("lstm_cell.weight_ih")?.shape;
    let [gates, lstm_input] = lstm.as_slice() else {
        return Err("lstm_cell.weight_ih is not 2-D".to_string());
    };
    push(&mut out, *lstm_input as i32);
    push(&mut out, (*gates / 4) as i32);
    let final_conv = &get("final_conv.weight")?.shape;
    push(&mut out, final_conv.get(1).copied().unwrap_or(0) as i32);
    push(&mut out, final_conv.first().copied().unwrap_or(0) as i32);

    let mut write =
        |name: &str, source: &str, half: bool, ne: Option<Vec<i32>>| -> Result<(), String> {
            let tensor = get(source)?;
            let ne = ne.unwrap_or_else(|| tensor.shape.iter().rev().map(|d| *d as i32).collect());
            push(&mut out, ne.len() as i32);
            push(&mut out, name.len() as i32);
            push(&mut out, i32::from(half));
            for d in &ne {
                push(&mut out, *d);
            }
            out.extend_from_slice(name.as_bytes());
            if half {
                out.extend_from_slice(&encode_f16(&tensor.values));
            } else {
                out.extend(tensor.values.iter().flat_map(|v| v.to_le_bytes()));
            }
            Ok(())
        };
    write(
        "_model.stft.forward_basis_buffer",
        "stft_conv.weight",
        true,
        None,
    )?;
    for layer in 0..4 {
        let source = layer + 1;
        write(
            &format!("_model.encoder.{layer}.reparam_conv.weight"),
            &format!("conv{source}.weight"),
            true,
            None,
        )?;
        write(
            &format!("_model.encoder.{layer}.reparam_conv.bias"),
            &format!("conv{source}.bias"),
            false,
            None,
        )?;
    }
    write(
        "_model.decoder.rnn.weight_ih",
        "lstm_cell.weight_ih",
        false,
        None,
    )?;
    write(
        "_model.decoder.rnn.weight_hh",
        "lstm_cell.weight_hh",
        false,
        None,
    )?;
    write(
        "_model.decoder.rnn.bias_ih",
        "lstm_cell.bias_ih",
        false,
        None,
    )?;
    write(
        "_model.decoder.rnn.bias_hh",
        "lstm_cell.bias_hh",
        false,
        None,
    )?;
    let final_in = final_conv.get(1).copied().unwrap_or(0) as i32;
    write(
        "_model.decoder.decoder.2.weight",
        "final_conv.weight",
        true,
        Some(vec![final_in, 1]),
    )?;
    write(
        "_model.decoder.decoder.2.bias",
        "final_conv.bias",
        false,
        None,
    )?;
    Ok(out)
}
