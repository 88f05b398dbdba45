//! Reading (and, for tests, writing) CTranslate2 `model.bin` files, the format PyPI's faster-whisper
//! weight packages ship.
//!
//! Layout (little-endian): `u32 version (6); str spec; u32 revision; u32 n_vars;` then per variable
//! `str name; u8 ndim; u32 dims[ndim]; u8 dtype; u32 nbytes; data`; then `u32 n_aliases; (str alias,
//! str target)*`. A `str` is a `u16` length including the trailing NUL, the bytes, and the NUL.

use half::f16;

use super::bytes::Reader;

/// Element type of a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// Signed byte (int8-quantised weights, scaled by a `<name>_scale` variable).
    I8,
    /// 16-bit integer (scalars such as `num_heads`).
    I16,
    /// 32-bit integer.
    I32,
    /// IEEE half float.
    F16,
    /// bfloat16.
    BF16,
}

impl DType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::BF16,
            _ => return None,
        })
    }

    fn code(self) -> u8 {
        match self {
            DType::F32 => 0,
            DType::I8 => 1,
            DType::I16 => 2,
            DType::I32 => 3,
            DType::F16 => 4,
            DType::BF16 => 5,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

/// One named tensor of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// Slash-separated name, e.g. `encoder/layer_0/ffn/linear_0/weight`.
    pub name: String,
    /// Shape, outermost first (row-major, as in PyTorch).
    pub dims: Vec<u32>,
    /// Element type.
    pub dtype: DType,
    /// Raw little-endian data, `element count × dtype size` bytes.
    pub data: Vec<u8>,
}

impl Variable {
    /// Number of elements (1 for a scalar).
    pub fn len(&self) -> usize {
        self.dims.iter().map(|d| *d as usize).product()
    }

    /// True for a variable without elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as f32. Integer types convert exactly (int8 still needs its scale, see
    /// [`Model::to_f32`]).
    pub fn values_f32(&self) -> Vec<f32> {
        let data = &self.data;
        match self.dtype {
            DType::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F16 => data
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::I8 => data.iter().map(|b| f32::from(*b as i8)).collect(),
            DType::I16 => data
                .chunks_exact(2)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])))
                .collect(),
            DType::I32 => data
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                .collect(),
        }
    }

    /// A scalar integer value (e.g. `encoder/num_heads`).
    pub fn scalar(&self) -> Option<i64> {
        if self.len() != 1 {
            return None;
        }
        self.values_f32().first().map(|v| *v as i64)
    }
}

/// A whole CTranslate2 model file.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Format version (6 for current files).
    pub version: u32,
    /// The model spec, `WhisperSpec` for Whisper.
    pub spec: String,
    /// Spec revision.
    pub revision: u32,
    /// Every variable in file order.
    pub variables: Vec<Variable>,
    /// `(alias, target)` pairs: a name that refers to another variable's data.
    pub aliases: Vec<(String, String)>,
}

impl Model {
    /// The variable called `name` (following aliases).
    pub fn get(&self, name: &str) -> Option<&Variable> {
        let target = self
            .aliases
            .iter()
            .find(|(alias, _)| alias == name)
            .map_or(name, |(_, target)| target.as_str());
        self.variables.iter().find(|v| v.name == target)
    }

    /// The values of `name` as f32, dequantising int8 weights with their per-row `<name>_scale`
    /// (CTranslate2 stores `round(w × scale)`).
    pub fn to_f32(&self, name: &str) -> Result<Vec<f32>, String> {
        let variable = self
            .get(name)
            .ok_or_else(|| format!("missing variable {name}"))?;
        let mut values = variable.values_f32();
        if variable.dtype == DType::I8 {
            let scale_name = format!("{name}_scale");
            let scale = self
                .get(&scale_name)
                .ok_or_else(|| format!("int8 variable {name} has no {scale_name}"))?
                .values_f32();
            let rows = variable.dims.first().copied().unwrap_or(1) as usize;
            if scale.len() != rows && scale.len() != 1 {
                return Err(format!(
                    "{scale_name} has {} values for {rows} rows",
                    scale.len()
                ));
            }
            let row_len = values.len() / rows.max(1);
            for (row, chunk) in values.chunks_mut(row_len.max(1)).enumerate() {
                let s = if scale.len() == 1 {
                    scale[0]
                } else {
                    scale[row]
                };
                if s != 0.0 {
                    chunk.iter_mut().for_each(|v| *v /= s);
                }
            }
        }
        Ok(values)
    }
}

/// Parses a model file. Errors say where the file stopped making sense.
pub fn parse(bytes: &[u8]) -> Result<Model, String> {
    let mut reader = Reader::new(bytes);
    let version = reader.u32()?;
    if version != 6 {
        return Err(format!(
            "unsupported CTranslate2 format version {version} (expected 6)"
        ));
    }
    let spec = reader.string()?;
    let revision = reader.u32()?;
    let count = reader.u32()?;
    let mut variables = Vec::with_capacity(count.min(10_000) as usize);
    for _ in 0..count {
        let name = reader.string()?;
        let ndim = reader.u8()?;
        let mut dims = Vec::with_capacity(ndim as usize);
        for _ in 0..ndim {
            dims.push(reader.u32()?);
        }
        let code = reader.u8()?;
        let dtype = DType::from_code(code)
            .ok_or_else(|| format!("variable {name}: unknown dtype {code}"))?;
        let nbytes = reader.u32()? as usize;
        let elements: usize = dims.iter().map(|d| *d as usize).product();
        if elements.checked_mul(dtype.size()) != Some(nbytes) {
            return Err(format!(
                "variable {name}: {nbytes} bytes do not hold {elements} elements of {dtype:?}"
            ));
        }
        let data = reader.take(nbytes)?.to_vec();
        variables.push(Variable {
            name,
            dims,
            dtype,
            data,
        });
    }
    let mut aliases = Vec::new();
    // Older files end without an alias table.
    if reader.remaining() > 0 {
        let count = reader.u32()?;
        for _ in 0..count {
            let alias = reader.string()?;
            let target = reader.string()?;
            aliases.push((alias, target));
        }
    }
    if reader.remaining() > 0 {
        return Err(format!(
            "{} unexpected bytes after the alias table",
            reader.remaining()
        ));
    }
    Ok(Model {
        version,
        spec,
        revision,
        variables,
        aliases,
    })
}

/// Serialises a model (used to build synthetic models in tests).
pub fn write(model: &Model) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&model.version.to_le_bytes());
    write_string(&mut out, &model.spec);
    out.extend_from_slice(&model.revision.to_le_bytes());
    out.extend_from_slice(&(model.variables.len() as u32).to_le_bytes());
    for variable in &model.variables {
        write_string(&mut out, &variable.name);
        out.push(variable.dims.len() as u8);
        for dim in &variable.dims {
            out.extend_from_slice(&dim.to_le_bytes());
        }
        out.push(variable.dtype.code());
        out.extend_from_slice(&(variable.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&variable.data);
    }
    out.extend_from_slice(&(model.aliases.len() as u32).to_le_bytes());
    for (alias, target) in &model.aliases {
        write_string(&mut out, alias);
        write_string(&mut out, target);
    }
    out
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&((text.len() + 1) as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}
