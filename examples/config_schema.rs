//! Prints the JSON schema of the policy file (`src/config.rs`) to stdout. The chart's schema
//! generator (`scripts/gen-chart-docs.py`) runs it for the `config` value:
//!
//!     cargo run --quiet --example config_schema > config.schema.json

fn main() -> anyhow::Result<()> {
    let schema = earthly_webhook::config::json_schema();
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(())
}
