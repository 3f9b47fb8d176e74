//! `rehost.yaml` parsing and validation: any text gives a configuration or an
//! error that can be printed, never a panic, a hang or an overflow.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A few variables are set so that interpolation takes both branches.
    let env = |name: &str| match name {
        "HOST" => Some("web-1".to_string()),
        "EMPTY" => Some(String::new()),
        "BUCKET" => Some("state".to_string()),
        _ => None,
    };
    match rehost::config::parse(Path::new("/etc/rehost/rehost.yaml"), text, &env) {
        Ok(config) => {
            // Every validated config must survive what the commands do with it.
            let _ = format!("{config:?}");
            let _ = config.jobs().count();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
