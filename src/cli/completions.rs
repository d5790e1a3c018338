use clap::CommandFactory;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to print completions for
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn exec(args: &Args) -> kbin::Result<()> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "kbin", &mut std::io::stdout());
    Ok(())
}
