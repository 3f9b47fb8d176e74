//! A service's `build:`: `./dir` or `{ context, dockerfile,
//! dockerfile_inline, target, args, labels, network, extra_hosts, shm_size,
//! cache_from }` → [`Build`].
//!
//! Invariants of the result: the context is an absolute local folder (URLs
//! and git remotes are refused: rehost builds without fetching), the
//! Dockerfile is a path inside it (or [`INLINE_DOCKERFILE`] for an inline
//! text), a bare `args` key takes the variable's value and is left out when
//! it is unset, and at most one build-time host is given.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::Value;

use super::error::{At, Fault};
use super::raw::RawBuild;
use super::service::Ctx;
use super::value::{self, from_value, opt};
use super::{mounts, settings, INLINE_DOCKERFILE};
use crate::stack::model::Build;

pub(crate) fn read(value: &Value, at: &At, cx: &Ctx<'_>) -> Result<Build, Fault> {
    let raw = match value {
        Value::String(context) => RawBuild {
            context: Some(Value::String(context.clone())),
            ..RawBuild::default()
        },
        Value::Mapping(_) => from_value::<RawBuild>(value, at)?,
        other => {
            return Err(at.fault(format!(
                "expected the build context's path or a mapping with `context:`, got {}",
                value::kind_of(other)
            )))
        }
    };
    let context_at = if value.is_mapping() {
        at.key("context")
    } else {
        at.clone()
    };
    let context = opt(&raw.context, &context_at, value::string)?.unwrap_or_else(|| ".".to_string());
    if context.contains("://") || context.starts_with("git@") || context.starts_with("github.com/")
    {
        return Err(context_at.fault(format!(
            "the build context must be a local folder (rehost builds without a registry or network), got {context:?}"
        )));
    }
    let context =
        mounts::host_path(&context, cx.working_dir, cx.env).map_err(|e| context_at.fault(e))?;
    let dockerfile_at = at.key("dockerfile");
    let dockerfile = match opt(&raw.dockerfile, &dockerfile_at, value::string)? {
        None => "Dockerfile".to_string(),
        Some(d) => dockerfile(&d, &context).map_err(|e| dockerfile_at.fault(e))?,
    };
    let dockerfile_inline = opt(
        &raw.dockerfile_inline,
        &at.key("dockerfile_inline"),
        value::string,
    )?;
    let dockerfile = match (&dockerfile_inline, &raw.dockerfile) {
        (Some(_), Some(_)) => {
            return Err(at
                .key("dockerfile_inline")
                .fault("give either `dockerfile` or `dockerfile_inline`, not both"))
        }
        // A name no context file has: the engine adds the text under it.
        (Some(_), None) => INLINE_DOCKERFILE.to_string(),
        (None, _) => dockerfile,
    };
    let target = opt(&raw.target, &at.key("target"), value::string)?;
    let labels = value::labels(&raw.labels, &at.key("labels"))?;
    let network = opt(&raw.network, &at.key("network"), value::string)?;
    let extra_hosts = settings::extra_hosts(&raw.extra_hosts, &at.key("extra_hosts"))?;
    if extra_hosts.len() > 1 {
        // bollard sends the build's `extrahosts` query parameter once.
        return Err(at
            .key("extra_hosts")
            .index(1)
            .fault("rehost passes one build-time host to the Engine's build API; give one entry"));
    }
    let shm_size = opt(&raw.shm_size, &at.key("shm_size"), settings::bytes)?;
    let mut args = BTreeMap::new();
    if let Some(value) = &raw.args {
        for (key, val) in value::dict_or_list(value, &at.key("args"))? {
            // As Compose: a bare `KEY` takes the variable, and is left out when unset.
            if let Some(val) = val.or_else(|| (cx.env)(&key)) {
                args.insert(key, val);
            }
        }
    }
    Ok(Build {
        context,
        dockerfile,
        args,
        target,
        dockerfile_inline,
        labels,
        network,
        extra_hosts,
        shm_size,
    })
}

/// The Dockerfile's path relative to the context (what the Engine's build API
/// takes), which therefore must be inside it.
fn dockerfile(text: &str, context: &Path) -> Result<String, String> {
    let outside = || {
        format!(
            "the Dockerfile {text:?} must be inside the build context {}",
            context.display()
        )
    };
    if text.is_empty() {
        return Err("expected a file name, got an empty string".to_string());
    }
    let absolute = mounts::normalize(&context.join(text));
    let relative = absolute.strip_prefix(context).map_err(|_| outside())?;
    let relative = relative.to_str().ok_or_else(outside)?;
    if relative.is_empty() {
        return Err(outside());
    }
    Ok(relative.to_string())
}
