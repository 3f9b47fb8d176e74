//! `${VAR}` interpolation with Compose's and rehost.yaml's rules: any input
//! gives a string or an error whose offset points at a `$` of the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rehost::interpolate::{interpolate, Interpolation};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| match name {
        "A" => Some("a$b".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    for result in [
        interpolate(text, &env),
        Interpolation::STRICT.apply(text, &env),
    ] {
        if let Err(e) = result {
            let _ = e.to_string();
            assert_eq!(
                text.as_bytes().get(e.offset()),
                Some(&b'$'),
                "error offset {} does not point at a `$` in {text:?}: {e}",
                e.offset()
            );
        }
    }
    // Without a `$` the text comes back unchanged.
    if !text.contains('$') {
        assert_eq!(interpolate(text, &env).ok().as_deref(), Some(text));
    }
});
