//! Writes fixture caches: `mlxk-fixtures standard HF_HOME` or
//! `mlxk-fixtures synthetic HF_HOME COUNT`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use mlxk_fixtures::{write_standard, write_synthetic, FixtureCache};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [kind, home] if kind == "standard" => {
            let cache = FixtureCache::create(&PathBuf::from(home))?;
            for name in write_standard(&cache)? {
                println!("{name}");
            }
        }
        [kind, home, count] if kind == "synthetic" => {
            let count: usize = count.parse().context("COUNT must be a number")?;
            write_synthetic(&FixtureCache::create(&PathBuf::from(home))?, count)?;
        }
        _ => bail!("usage: mlxk-fixtures standard HF_HOME | mlxk-fixtures synthetic HF_HOME COUNT"),
    }
    Ok(())
}
