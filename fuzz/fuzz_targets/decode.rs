//! Any bytes on a channel: the size cap, UTF-8 and JSON checks and the decoder, and — for anything
//! shaped like a signed envelope — verification against a fixed key. Must never panic.
#![no_main]

use herald::message::{self, DEFAULT_MAX_PAYLOAD};
use herald::trust::{self, Keyring};
use libfuzzer_sys::fuzz_target;

/// The public half of the key that signed `corpus/decode/signed-question.json` (kid "fz"); its
/// private half is not kept.
const FZ_PUBLIC: &str = "rk/Mf4oIOvH2jOOwKM0qTcoRkJnKpusXc2Z2ZCdgWZU=";

/// The seed's `ts`: verification runs "then", so mutations reach the signature check.
const SEED_TS: i64 = 1_796_424_948;

fuzz_target!(|data: &[u8]| {
    let _ = message::decode(data, DEFAULT_MAX_PAYLOAD, || "fuzz".into());
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if trust::looks_signed(&json) {
        let keys = Keyring::from_base64(&[("fz".into(), FZ_PUBLIC.into())]).expect("valid key");
        if let Ok(verified) = trust::verify(json, &keys, SEED_TS, 300) {
            let _ = message::decode(verified.payload.as_bytes(), DEFAULT_MAX_PAYLOAD, || {
                "fuzz".into()
            });
        }
    }
});
