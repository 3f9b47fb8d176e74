//! The compose loader (`docker-compose.yml` → project, with Compose's
//! interpolation): any text gives a project or a printable error, never a
//! panic, a hang or an overflow.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| match name {
        "TAG" => Some("1.2".to_string()),
        "EMPTY" => Some(String::new()),
        "PORT" => Some("8080".to_string()),
        _ => None,
    };
    // A folder that does not exist: a service's `env_file:` must fail to
    // open, not read whatever the fuzzer names.
    let dir = Path::new("/nonexistent/rehost-fuzz/stack");
    match rehost::stack::compose::parse(text, &dir.join("docker-compose.yml"), dir, "site", &env) {
        Ok(project) => {
            let _ = format!("{project:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
