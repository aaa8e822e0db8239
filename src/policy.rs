//! The compiled policy: the config plus what is derived from it once at start-up.

use crate::config::Config;
use crate::detect::Detector;

/// The compiled policy, shared by the server, `check` and the rules.
#[derive(Debug, Clone)]
pub struct Policy {
    config: Config,
    detector: Detector,
}

impl Policy {
    /// Compiles a validated config. Fails only on image patterns, which
    /// [`Config::from_yaml`] has already checked.
    pub fn new(config: Config) -> Result<Self, globset::Error> {
        let detector = Detector::new(&config.detection)?;
        Ok(Self { config, detector })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }
}
