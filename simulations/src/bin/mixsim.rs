//! `mixsim`: run a scenario or a parameter sweep and write the results.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use simulations::sweep::Shard;
use simulations::{Scenario, SourceFile, Sweep, run, run_seeds, write_run, write_seeds};

/// The allocator of large runs: under anonymity tracking every mix output
/// allocates a belief of up to one entry per client, and glibc's allocator
/// spent most of a 100 000-client run searching its bins while its resident
/// memory grew with fragmentation (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Deterministic discrete-event simulator of the mixnet.
#[derive(Parser)]
#[command(name = "mixsim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one scenario and writes report.json, CSV tables, SVG plots, summary.txt and report.html.
    Run {
        /// The scenario TOML file.
        scenario: PathBuf,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Runs seeds s..s+N-1 in parallel: one directory per seed, and
        /// 95 % confidence intervals in confidence.csv and summary.txt.
        #[arg(long, default_value_t = 1)]
        seeds: usize,
        /// Worker threads for --seeds (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Runs a grid of scenarios on every core and writes sweep.csv, one SVG per metric and report.html.
    Sweep {
        /// The sweep TOML file.
        sweep: PathBuf,
        /// Output directory (created if missing); with --shard, the shard file.
        #[arg(long)]
        out: PathBuf,
        /// Seeds per grid point; means with 95 % confidence intervals.
        #[arg(long, default_value_t = 1)]
        seeds: usize,
        /// Runs only shard i of n (i/n) and writes its runs to --out, for `merge`.
        #[arg(long)]
        shard: Option<Shard>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Merges the shard files of a sweep into what the unsharded sweep writes.
    Merge {
        /// The sweep TOML file the shards ran.
        sweep: PathBuf,
        /// The shard files, one per shard.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
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
            seeds,
            threads,
            quiet,
        } => {
            let s = Scenario::from_file(&scenario)?;
            let source = SourceFile::of(&scenario);
            if seeds > 1 {
                let pb = bar(
                    seeds as u64,
                    quiet,
                    "{elapsed_precise} [{bar:40}] {pos}/{len} seeds ({eta} left)",
                );
                let runs = run_seeds(&s, seeds, threads, Some(&pb))
                    .with_context(|| format!("running {}", scenario.display()))?;
                pb.finish_and_clear();
                write_seeds(&runs, &source, &out)
                    .with_context(|| format!("writing {}", out.display()))?;
                let summary = std::fs::read_to_string(out.join("summary.txt"))?;
                print!("{summary}");
                println!("results in {}", out.display());
                return Ok(());
            }
            let virtual_ms = ((s.duration_secs + s.drain_secs) * 1000.0) as u64;
            let pb = bar(
                virtual_ms,
                quiet,
                "{elapsed_precise} [{bar:40}] {pos}/{len} virtual ms ({eta} left)",
            );
            let result =
                run(&s, Some(&pb)).with_context(|| format!("running {}", scenario.display()))?;
            pb.finish_and_clear();
            write_run(&result, &source, &out)
                .with_context(|| format!("writing {}", out.display()))?;
            print!("{}", result.report.summary());
            println!("results in {}", out.display());
        }
        Command::Sweep {
            sweep,
            out,
            seeds,
            shard,
            quiet,
        } => {
            let grid = Sweep::from_file(&sweep)?;
            let pb = bar(
                (grid.len() * seeds.max(1)) as u64,
                quiet,
                "{elapsed_precise} [{bar:40}] {pos}/{len} runs ({eta} left)",
            );
            let runs = grid
                .run(seeds, shard, Some(&pb))
                .with_context(|| format!("running {}", sweep.display()))?;
            pb.finish_and_clear();
            match shard {
                Some(sh) => {
                    grid.write_shard(&runs, seeds, sh, &out)
                        .with_context(|| format!("writing {}", out.display()))?;
                    println!(
                        "shard {}/{}: {} runs in {}",
                        sh.index,
                        sh.count,
                        runs.len(),
                        out.display()
                    );
                }
                None => {
                    grid.write(&runs, seeds.max(1), &out)
                        .with_context(|| format!("writing {}", out.display()))?;
                    println!("{} runs; results in {}", runs.len(), out.display());
                }
            }
        }
        Command::Merge { sweep, shards, out } => {
            let grid = Sweep::from_file(&sweep)?;
            let (runs, seeds) = grid.merge(&shards).context("merging shards")?;
            grid.write(&runs, seeds, &out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{} runs merged; results in {}", runs.len(), out.display());
        }
    }
    Ok(())
}
