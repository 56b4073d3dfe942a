//! `loadgen sweep`'s flags: every flag of `run`, where `--batch-size`, `--batch-linger`,
//! `--queue` and `--policy` also take comma-separated lists (the grid), plus the grid's own
//! `--workers`, `--demand` and `--on-limit`.
//!
//! The four shared flags are `run`'s own arguments turned into lists for this command
//! (`Command::mut_arg`), so a sweep point's flags and `run`'s are one set: clap refuses two
//! arguments of one name.

use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use super::{BatchSize, Demand, OnLimit, Policy, QueueKind, RunArgs};
use crate::units;

/// The grid and the base flags of a sweep.
#[derive(Debug, Clone)]
pub struct SweepArgs {
    /// Batch sizes to try (with --sink-mode batch); `auto` among them is adaptive batching.
    pub batch_size: Vec<BatchSize>,
    /// Batch lingers to try.
    pub batch_linger: Vec<Duration>,
    /// Worker counts to try.
    pub workers: Vec<usize>,
    /// Queue modes to try.
    pub queue: Vec<QueueKind>,
    /// Policies to try.
    pub policy: Vec<Policy>,
    /// Demand strategies to try.
    pub demand: Vec<Demand>,
    /// Ways of meeting the embedded sinkd's limit to try.
    pub on_limit: Vec<OnLimit>,
    /// Rounds of the whole grid (the table gives min / median / max).
    pub repeat: usize,
    /// Everything else, as for `run` (the grid's first value where a grid flag was given).
    pub base: RunArgs,
}

/// The grid's flags that `run` does not have.
#[derive(Debug, Clone, clap::Args)]
struct Grid {
    /// Worker counts to try, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = units::workers)]
    workers: Vec<usize>,
    /// Demand strategies to try, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    demand: Vec<Demand>,
    /// Ways of meeting the embedded sinkd's limit to try, comma-separated: reject (429 and
    /// retry), delay (held on the server), credit (sent only against sinkd's grants).
    #[arg(long, value_enum, value_delimiter = ',')]
    on_limit: Vec<OnLimit>,
    /// Runs the whole grid this many times, round after round (1 to 20); the table gives min /
    /// median / max of each figure, the charts the median.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=20))]
    repeat: u16,
}

/// `run`'s flags that a sweep takes as lists, with their help.
const LISTS: [(&str, &str); 4] = [
    (
        "batch_size",
        "Batch sizes to try, comma-separated (with --sink-mode batch)",
    ),
    (
        "batch_linger",
        "Batch lingers to try, comma-separated (e.g. 5ms,50ms)",
    ),
    ("queue", "Queue modes to try, comma-separated"),
    ("policy", "Overload policies to try, comma-separated"),
];

/// The values given on the command line for `id`; empty when it was not given.
fn list<T: Clone + Send + Sync + 'static>(m: &ArgMatches, id: &str) -> Vec<T> {
    if m.value_source(id) != Some(ValueSource::CommandLine) {
        return Vec::new();
    }
    m.get_many::<T>(id)
        .map(|v| v.cloned().collect())
        .unwrap_or_default()
}

impl FromArgMatches for SweepArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Self::from_arg_matches_mut(&mut m.clone())
    }

    fn from_arg_matches_mut(m: &mut ArgMatches) -> Result<Self, clap::Error> {
        let batch_size = list(m, "batch_size");
        let batch_linger = list(m, "batch_linger");
        let queue = list(m, "queue");
        let policy = list(m, "policy");
        let grid = Grid::from_arg_matches_mut(m)?;
        let base = RunArgs::from_arg_matches_mut(m)?;
        Ok(SweepArgs {
            batch_size,
            batch_linger,
            workers: grid.workers,
            queue,
            policy,
            demand: grid.demand,
            on_limit: grid.on_limit,
            repeat: usize::from(grid.repeat),
            base,
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for SweepArgs {
    fn augment_args(cmd: Command) -> Command {
        let mut cmd = Grid::augment_args(RunArgs::augment_args(cmd));
        for (id, help) in LISTS {
            cmd = cmd.mut_arg(id, |a: Arg| {
                a.value_delimiter(',').action(ArgAction::Append).help(help)
            });
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::cli::{Cli, Command as Sub};

    fn sweep(args: &[&str]) -> Result<SweepArgs, clap::Error> {
        let argv = ["loadgen", "sweep"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Some(Sub::Sweep(s)) => Ok(s),
            other => panic!("not a sweep: {other:?}"),
        }
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn grid_flags_take_lists_and_the_rest_are_run_flags() {
        let s = sweep(&[
            "--batch-size",
            "1,50,200",
            "--queue",
            "bounded,unbounded",
            "--on-limit",
            "reject,delay,credit",
            "--sink-rate",
            "500",
        ])
        .unwrap();
        assert_eq!(
            s.batch_size,
            vec![
                BatchSize::Fixed(1),
                BatchSize::Fixed(50),
                BatchSize::Fixed(200)
            ]
        );
        assert_eq!(s.queue, vec![QueueKind::Bounded, QueueKind::Unbounded]);
        assert_eq!(
            s.on_limit,
            vec![OnLimit::Reject, OnLimit::Delay, OnLimit::Credit]
        );
        assert!(s.policy.is_empty() && s.workers.is_empty() && s.demand.is_empty());
        assert_eq!(s.base.sink_rate, 500.0);
    }

    #[test]
    fn a_flag_not_given_is_no_grid_dimension() {
        let s = sweep(&["--workers", "1,4"]).unwrap();
        assert!(
            s.batch_size.is_empty(),
            "the default batch size is not a grid"
        );
        assert_eq!(s.workers, vec![1, 4]);
        assert_eq!(s.repeat, 1);
        assert!(sweep(&["--repeat", "0"]).is_err());
    }

    #[test]
    fn a_bad_value_names_the_flag() {
        let e = sweep(&["--on-limit", "reject,sometimes"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--on-limit") && e.contains("credit"), "{e}");
        let e = sweep(&["--batch-size", "1,0"]).unwrap_err().to_string();
        assert!(e.contains("--batch-size"), "{e}");
    }
}
