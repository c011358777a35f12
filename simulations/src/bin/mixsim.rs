//! `mixsim`: run a scenario or a parameter sweep and write the results.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use simulations::{Scenario, Sweep, run, write_run};

/// Deterministic discrete-event simulator of the mixnet.
#[derive(Parser)]
#[command(name = "mixsim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one scenario and writes report.json, CSV tables, SVG plots and summary.txt.
    Run {
        /// The scenario TOML file.
        scenario: PathBuf,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Runs a grid of scenarios on every core and writes sweep.csv and one SVG per metric.
    Sweep {
        /// The sweep TOML file.
        sweep: PathBuf,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

fn bar(len: u64, quiet: bool, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run {
            scenario,
            out,
            quiet,
        } => {
            let s = Scenario::from_file(&scenario)?;
            let virtual_ms = ((s.duration_secs + s.drain_secs) * 1000.0) as u64;
            let pb = bar(
                virtual_ms,
                quiet,
                "{elapsed_precise} [{bar:40}] {pos}/{len} virtual ms ({eta} left)",
            );
            let result =
                run(&s, Some(&pb)).with_context(|| format!("running {}", scenario.display()))?;
            pb.finish_and_clear();
            write_run(&result, &out).with_context(|| format!("writing {}", out.display()))?;
            print!("{}", result.report.summary());
            println!("results in {}", out.display());
        }
        Command::Sweep { sweep, out, quiet } => {
            let grid = Sweep::from_file(&sweep)?;
            let pb = bar(
                grid.len() as u64,
                quiet,
                "{elapsed_precise} [{bar:40}] {pos}/{len} points ({eta} left)",
            );
            let rows = grid
                .run(Some(&pb))
                .with_context(|| format!("running {}", sweep.display()))?;
            pb.finish_and_clear();
            grid.write(&rows, &out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{} points; results in {}", rows.len(), out.display());
        }
    }
    Ok(())
}
