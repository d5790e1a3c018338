use clap::Subcommand;

use super::Global;

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Check the cluster file and print what kbin understood (placeholder until pki lands)
    Validate,
}

pub fn exec(global: &Global, cmd: &PkiCommand) -> kbin::Result<()> {
    match cmd {
        PkiCommand::Validate => {
            let c = global.cluster()?;
            println!("{}", serde_json::to_string_pretty(&c).unwrap());
            Ok(())
        }
    }
}
