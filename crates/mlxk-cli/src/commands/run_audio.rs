//! `mlxk run MODEL --audio FILE`: speech to text with a Whisper model loaded here. The text goes
//! to stdout segment by segment as each 30-second window is decoded (with `--timestamps`, one
//! timed line per segment); `--json` gives the whole transcript with its segments.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use mlxk_core::classify::{Capability, ModelType};
use mlxk_core::usage::UsageLog;
use mlxk_core::Library;
use mlxk_engine::{resolve_language, RuntimeInfo, Segment, SpeechModel, Task, TranscribeOptions};
use serde_json::json;

use super::run::{find, loading, prompt, RunArgs};
use crate::output::{CliError, Outcome, Output};

pub fn run(args: &RunArgs, path: &Path, output: &Output) -> Result<Outcome, CliError> {
    let options = options(args)?;
    let started = Instant::now();
    let library = Library::from_env();
    let runnable = find(&library, &args.model, output)?;
    if runnable.info.classification.model_type != ModelType::Audio {
        return Err(CliError::new(
            "not_a_speech_model",
            format!(
                "{} is a {} model, not a speech-to-text model (Whisper): it cannot take --audio",
                runnable.name,
                runnable.info.classification.model_type.label()
            ),
        ));
    }
    let classification = &runnable.info.classification;
    if options.task == Task::Translate
        && !classification
            .capabilities
            .contains(&Capability::AudioTranslateEn)
    {
        return Err(CliError::usage(format!(
            "{} is English-only (a Whisper .en model): it transcribes but cannot translate",
            runnable.name
        )));
    }
    // The file is read before the model loads: a wrong path or format is said at once.
    let audio = mlxk_audio::decode_file(path, &mlxk_audio::Limits::CLI)
        .map_err(|e| CliError::new(e.kind(), format!("{}: {e}", path.display())))?;
    let spinner = loading(&runnable.name, output);
    let model = SpeechModel::load(&runnable.dir, &args.weights.policy()?);
    spinner.finish_and_clear();
    let model = model.map_err(|e| CliError::new("execution_error", e.to_string()))?;
    model
        .check(&options)
        .map_err(|e| CliError::usage(format!("{}: {e}", runnable.name)))?;
    let _ = UsageLog::for_cache(library.cache()).record(&runnable.name);
    let loaded_in = started.elapsed();
    if args.verbose {
        let source = &audio.source;
        eprintln!(
            "[loaded {} in {:.2} s; weights {}: {}; BLAS {} | audio: {} {} {} Hz, {} channel(s), {:.2} s]",
            runnable.name,
            loaded_in.as_secs_f64(),
            model.plan.layout.label(),
            model.plan.reason,
            RuntimeInfo::detect().blas.name,
            source.container,
            source.codec,
            source.sample_rate,
            source.channels,
            audio.seconds(),
        );
    }

    let initial_prompt = options.initial_prompt.clone();
    let source = audio.source.clone();
    let transcribing = Instant::now();
    let mut run = model
        .start(audio.samples, options)
        .map_err(|e| CliError::new("execution_error", e.to_string()))?;
    let show_as_it_comes = !output.json && !args.no_stream;
    let progress = progress_bar(run.progress().1, output);
    let mut first = true;
    while !run.is_done() {
        let segments = run
            .step()
            .map_err(|e| CliError::new("execution_error", e.to_string()))?;
        progress.set_position(run.progress().0 as u64);
        if !show_as_it_comes {
            continue;
        }
        progress.suspend(|| {
            let mut stdout = io::stdout().lock();
            for segment in segments.iter().filter(|s| !s.text.is_empty()) {
                let _ = if args.timestamps {
                    writeln!(stdout, "{}", timed_line(segment))
                } else if first {
                    write!(stdout, "{}", segment.text.trim_start())
                } else {
                    write!(stdout, "{}", segment.text)
                };
                first = false;
            }
            let _ = stdout.flush();
        });
    }
    progress.finish_and_clear();
    let transcript = run.finish();
    let seconds = transcribing.elapsed().as_secs_f64();
    if show_as_it_comes && !args.timestamps && !first {
        println!();
    }
    if args.verbose {
        eprintln!(
            "[transcribed {:.2} s of audio in {:.2} s: real-time factor {:.3} | language {} | {} segment(s) | peak memory {:.2} GB]",
            transcript.duration,
            seconds,
            seconds / transcript.duration.max(1e-9),
            transcript.language,
            transcript.segments.len(),
            mlxk_engine::runtime::peak_memory_bytes() as f64 / 1e9,
        );
    }
    let shown = if show_as_it_comes {
        String::new()
    } else if args.timestamps {
        transcript
            .segments
            .iter()
            .filter(|s| !s.text.is_empty())
            .map(timed_line)
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        transcript.text.clone()
    };
    let mut data = json!({
        "model": runnable.name,
        "audio": path.display().to_string(),
        // Every `run` record has the answer as `response`; for speech it is the transcript.
        "response": transcript.text,
        "text": transcript.text,
        "task": transcript.task,
        "language": transcript.language,
        "duration_s": transcript.duration,
        "segments": transcript.segments,
        "audio_source": source,
        "stats": {
            "load_time_s": loaded_in.as_secs_f64(),
            "transcription_time_s": seconds,
            "real_time_factor": seconds / transcript.duration.max(1e-9),
            "peak_memory_bytes": mlxk_engine::runtime::peak_memory_bytes(),
        },
    });
    if let Some(prompt) = initial_prompt {
        data["prompt"] = prompt.into();
    }
    Ok(Outcome::new(data, shown))
}

/// What the flags ask of the transcription.
fn options(args: &RunArgs) -> Result<TranscribeOptions, CliError> {
    let mut options = TranscribeOptions {
        task: if args.translate {
            Task::Translate
        } else {
            Task::Transcribe
        },
        seed: args.seed,
        ..TranscribeOptions::default()
    };
    if let Some(language) = &args.language {
        let code = resolve_language(language).ok_or_else(|| {
            CliError::usage(format!(
                "--language {language}: not a language Whisper knows (a code such as de, or an English name such as german)"
            ))
        })?;
        options.language = Some(code.to_string());
    }
    if let Some(t) = args.temperature {
        if !(0.0..=1.0).contains(&t) {
            return Err(CliError::usage(format!(
                "--temperature {t}: Whisper samples at 0 to 1"
            )));
        }
        options.temperatures = TranscribeOptions::temperatures_from(t);
    }
    options.initial_prompt = prompt(args)?.filter(|p| !p.trim().is_empty());
    Ok(options)
}

/// A bar over the seconds of audio, on a terminal only.
fn progress_bar(total_seconds: f64, output: &Output) -> ProgressBar {
    if output.json || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_seconds.ceil() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} transcribing {pos}/{len} s {wide_bar} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// `[00:01.000 --> 00:04.200]  text`: a segment for `--timestamps`.
fn timed_line(segment: &Segment) -> String {
    format!(
        "[{} --> {}]  {}",
        clock(segment.start),
        clock(segment.end),
        segment.text.trim()
    )
}

/// `mm:ss.mmm`, with hours in front when there are any.
fn clock(seconds: f64) -> String {
    let millis = (seconds.max(0.0) * 1000.0).round() as u64;
    let (hours, rest) = (millis / 3_600_000, millis % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (secs, millis) = (rest / 1000, rest % 1000);
    if hours > 0 {
        format!("{hours:02}:{minutes:02}:{secs:02}.{millis:03}")
    } else {
        format!("{minutes:02}:{secs:02}.{millis:03}")
    }
}

#[cfg(test)]
mod tests {
    use super::clock;

    #[test]
    fn clocks_read_like_subtitles() {
        assert_eq!(clock(0.0), "00:00.000");
        assert_eq!(clock(61.2345), "01:01.235");
        assert_eq!(clock(3725.5), "01:02:05.500");
    }
}
