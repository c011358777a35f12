//! The mix node's TOML configuration: the sections every node has, with
//! packet processing under `[mixing]`.
//!
//! Only what is particular to this node lives here; network-wide parameters
//! (epoch length, delays, rates, packet size) come from the signed topology.

use std::path::Path;

use anyhow::Result;
use nodeshell::config::{
    DirectorySection, MetricsSection, NodeConfig, NodeSection, ProcessingSection, Template,
};
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node.
    pub node: NodeSection,
    /// The directory service.
    pub directory: DirectorySection,
    /// The Prometheus endpoint.
    pub metrics: MetricsSection,
    /// Packet processing.
    #[serde(default)]
    pub mixing: ProcessingSection,
}

impl Config {
    /// Reads and checks the file at `path`; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Config> {
        let config: Config = nodeshell::config::load(path)?;
        config.node_config().check(path)?;
        Ok(config)
    }

    /// The sections the node runtime reads.
    pub fn node_config(&self) -> NodeConfig {
        NodeConfig::new(&self.node, &self.directory, &self.metrics, &self.mixing)
    }

    /// A commented config for `mixnode init`.
    pub fn template(common: &Template) -> String {
        format!(
            "# Mix node configuration.
# Network-wide parameters (epoch length, delays, cover rates) come from the
# signed topology published by the directory, not from this file.

{}
{}
{}",
            common.node("the replay journal and the topology cache"),
            common.directory_and_metrics(),
            common.processing("mixing"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_to_defaults_and_names_every_key() {
        let dir = Path::new("/var/lib/mixnode");
        let text = Config::template(&Template::example(dir));
        let c: Config = toml::from_str(&text).unwrap();
        assert_eq!(c.mixing, ProcessingSection::default());
        assert_eq!(
            c.directory.refresh_ms,
            nodeshell::config::default_refresh_ms()
        );
        assert_eq!(c.node.data_dir, dir);
        assert_eq!(c.node_config().public_address(c.node.listen), c.node.listen);
        assert!(text.contains("[mixing]"), "{text}");
        for key in nodeshell::config::TEMPLATE_KEYS {
            assert!(text.contains(&format!("{key} =")), "template names `{key}`");
        }
    }
}
