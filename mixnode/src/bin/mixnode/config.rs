//! The mix node's TOML configuration: the sections every node has, with
//! packet processing under `[mixing]`, and none of its own.
//!
//! Only what is particular to this node lives here; network-wide parameters
//! (epoch length, delays, rates, packet size) come from the signed topology.

use nodeshell::config::{RoleSections, Template};
use serde::Deserialize;

/// The mix node's own sections: none.
#[derive(Debug, Deserialize)]
pub struct MixSections {}

impl RoleSections for MixSections {
    const PROCESSING: &'static str = "mixing";
    const SECTIONS: &'static [&'static str] = &[];
}

/// A commented config for `mixnode init`.
pub fn template(common: &Template) -> String {
    format!(
        "# Mix node configuration.
# Network-wide parameters (epoch length, delays, cover rates) come from the
# signed topology published by the directory, not from this file.

{}
{}
{}
{}",
        common.node("the replay journal and the topology cache"),
        common.directory_and_metrics(),
        common.audit(),
        common.processing(MixSections::PROCESSING),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use nodeshell::config::{ProcessingSection, TEMPLATE_KEYS, parse};

    use super::*;

    #[test]
    fn template_parses_to_defaults_and_names_every_key() {
        let dir = Path::new("/var/lib/mixnode");
        let text = template(&Template::example(dir));
        let file = parse::<MixSections>(Path::new("config.toml"), &text).unwrap();
        assert_eq!(file.node.processing, ProcessingSection::default());
        assert_eq!(file.node.node.data_dir, dir);
        assert!(text.contains("[mixing]"), "{text}");
        for key in TEMPLATE_KEYS {
            assert!(text.contains(&format!("{key} =")), "template names `{key}`");
        }
        // A gateway's section is not a mix node's.
        let e = parse::<MixSections>(Path::new("config.toml"), &format!("{text}[clients]\n"))
            .unwrap_err();
        assert!(e.to_string().contains("unknown section `clients`"), "{e}");
    }
}
