//! Signed rule packs: an admin signs a pack folder once (`herald pack sign`), and agents with
//! `[rules] require_signed_packs = true` refuse a pack whose files were changed, added or removed
//! since — at start and at every reload, while the rules they already run stay in effect.
//!
//! The signature (Ed25519, a key from `[trust] keys`) covers every rule file of the folder in lexical
//! order: its name, its length and its bytes. It lives beside them in `herald-pack.sig`.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use super::{LoadError, rule_files_in};
use crate::trust::Keyring;

/// The signature file's name inside a pack folder.
pub const SIG_FILE: &str = "herald-pack.sig";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackSignature {
    kid: String,
    files: Vec<String>,
    sig: String,
}

/// What is signed: each rule file's name, length and contents, in load order.
fn canonical(dir: &Path) -> Result<(Vec<String>, Vec<u8>), String> {
    let files = rule_files_in(dir)?;
    let mut names = Vec::new();
    let mut bytes = Vec::new();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let content = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        bytes.extend_from_slice(format!("{name}\n{}\n", content.len()).as_bytes());
        bytes.extend_from_slice(&content);
        names.push(name);
    }
    Ok((names, bytes))
}

/// Signs the pack in `dir`, writing `herald-pack.sig`. Returns the files covered.
pub fn sign(dir: &Path, key: &SigningKey, kid: &str) -> Result<Vec<String>, String> {
    use ed25519_dalek::Signer;
    let (files, bytes) = canonical(dir)?;
    if files.is_empty() {
        return Err(format!("{} holds no rule files", dir.display()));
    }
    let sig = PackSignature {
        kid: kid.to_owned(),
        files: files.clone(),
        sig: STANDARD.encode(key.sign(&bytes).to_bytes()),
    };
    let text = serde_json::to_string_pretty(&sig).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(SIG_FILE), text + "\n").map_err(|e| e.to_string())?;
    Ok(files)
}

/// Checks every pack folder's signature against `keys`; all problems at once.
pub fn verify_all(packs: &[std::path::PathBuf], keys: &Keyring) -> Result<(), Vec<LoadError>> {
    let errors: Vec<LoadError> = packs
        .iter()
        .filter_map(|pack| {
            verify(pack, keys).err().map(|message| LoadError {
                file: pack.display().to_string(),
                message,
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn verify(dir: &Path, keys: &Keyring) -> Result<(), String> {
    if dir.is_file() {
        return Err(
            "a single-file pack cannot be signed; put it in a folder and run `herald pack sign`"
                .into(),
        );
    }
    let text = std::fs::read_to_string(dir.join(SIG_FILE))
        .map_err(|_| format!("pack is not signed (no {SIG_FILE}); run `herald pack sign` on it"))?;
    let sig: PackSignature = serde_json::from_str(&text).map_err(|e| format!("{SIG_FILE}: {e}"))?;
    let (files, bytes) = canonical(dir)?;
    if files != sig.files {
        let added: Vec<&String> = files.iter().filter(|f| !sig.files.contains(f)).collect();
        let removed: Vec<&String> = sig.files.iter().filter(|f| !files.contains(f)).collect();
        return Err(format!(
            "pack changed since it was signed: added {added:?}, removed {removed:?}"
        ));
    }
    keys.verify_bytes(&sig.kid, &bytes, &sig.sig)
        .map_err(|e| format!("pack signature: {e} (a file was modified since it was signed?)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_pack_verifies_until_a_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.luau"),
            "return { on_message = function(m) return m end }",
        )
        .unwrap();
        let key = crate::trust::generate().unwrap();
        let keys =
            Keyring::from_base64(&[("admin".into(), crate::trust::public_key_text(&key))]).unwrap();
        sign(dir.path(), &key, "admin").unwrap();
        verify(dir.path(), &keys).unwrap();
        std::fs::write(
            dir.path().join("a.luau"),
            "return { on_message = function(m) return nil end }",
        )
        .unwrap();
        assert!(verify(dir.path(), &keys).unwrap_err().contains("modified"));
        sign(dir.path(), &key, "admin").unwrap();
        std::fs::write(dir.path().join("b.luau"), "return {}").unwrap();
        assert!(
            verify(dir.path(), &keys)
                .unwrap_err()
                .contains("added [\"b.luau\"]")
        );
        std::fs::remove_file(dir.path().join("b.luau")).unwrap();
        std::fs::remove_file(dir.path().join(SIG_FILE)).unwrap();
        assert!(
            verify(dir.path(), &keys)
                .unwrap_err()
                .contains("not signed")
        );
    }
}
