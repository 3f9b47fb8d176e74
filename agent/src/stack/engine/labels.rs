//! The labels rehost puts on what it creates: Compose's own names, so that
//! `docker ps --filter label=com.docker.compose.project=site` and users'
//! other habits keep working, and so that `up` recognises its containers.

pub(crate) const PROJECT: &str = "com.docker.compose.project";
pub(crate) const SERVICE: &str = "com.docker.compose.service";
pub(crate) const NUMBER: &str = "com.docker.compose.container-number";
pub(crate) const ONEOFF: &str = "com.docker.compose.oneoff";
pub(crate) const CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub(crate) const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
pub(crate) const CONFIG_FILES: &str = "com.docker.compose.project.config_files";
pub(crate) const NETWORK: &str = "com.docker.compose.network";
pub(crate) const VOLUME: &str = "com.docker.compose.volume";

/// The Engine's list filter for everything labelled with `project`.
pub(crate) fn project_filter(project: &str) -> std::collections::HashMap<String, Vec<String>> {
    std::collections::HashMap::from([("label".to_string(), vec![format!("{PROJECT}={project}")])])
}
