//! `POST /v1/audio/transcriptions` and `/v1/audio/translations`, as OpenAI defines them: a
//! multipart form with `file` (its name is the format hint), `model`, `language`, `prompt`,
//! `response_format` (`json`, `text`, `verbose_json`, `srt`, `vtt`), `temperature` and
//! `timestamp_granularities[]` (segments only: Whisper's word timestamps are not implemented).
//! Nothing is streamed (`stream=true` is refused: OpenAI streams only its gpt-4o models).
//! Fields OpenAI's newer models read and Whisper has nothing for (`chunking_strategy`, other
//! unknown fields) are ignored, as OpenAI's `whisper-1` does; `include[]` asks for what we
//! cannot give (log-probabilities) and is refused.

use std::sync::Arc;

use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use mlxk_engine::{FinishReason, Task, TranscribeOptions, Transcript};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::request_log::RequestLog;
use crate::routes::Shared;
use crate::service::{Event, TranscriptionRequest, Usage};
use crate::worker::KeepAlive;

pub async fn transcriptions(
    State(state): State<Shared>,
    Extension(log): Extension<Arc<RequestLog>>,
    request: Request,
) -> Result<Response, ApiError> {
    transcribe(state, log, request, Task::Transcribe).await
}

pub async fn translations(
    State(state): State<Shared>,
    Extension(log): Extension<Arc<RequestLog>>,
    request: Request,
) -> Result<Response, ApiError> {
    transcribe(state, log, request, Task::Translate).await
}

async fn transcribe(
    state: Shared,
    log: Arc<RequestLog>,
    request: Request,
    task: Task,
) -> Result<Response, ApiError> {
    let limit = state.config.max_audio_body_bytes();
    let form = Multipart::from_request(request, &state)
        .await
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let upload = Upload::read(form, limit).await?;
    let format = upload.format;
    let request = upload.into_request(task)?;
    log.model(&request.model);
    let (model, transcript) = state.service.transcribe(request).await?;
    log.model(&model.name);
    log.saw(&Event::Done {
        finish_reason: FinishReason::Stop,
        usage: transcript_usage(&transcript),
        stop_sequence: None,
    });
    Ok(respond(&transcript, format))
}

/// The tokens the decoder wrote (timestamps included); the audio is no prompt of tokens.
pub(crate) fn transcript_usage(transcript: &Transcript) -> Usage {
    Usage {
        completion_tokens: transcript.segments.iter().map(|s| s.tokens.len()).sum(),
        ..Usage::default()
    }
}

/// How the transcript is answered (`response_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    Text,
    VerboseJson,
    Srt,
    Vtt,
}

impl Format {
    fn parse(name: &str) -> Result<Format, ApiError> {
        Ok(match name {
            "json" => Format::Json,
            "text" => Format::Text,
            "verbose_json" => Format::VerboseJson,
            "srt" => Format::Srt,
            "vtt" => Format::Vtt,
            other => {
                return Err(ApiError::bad_request(format!(
                    "'response_format' is '{other}': json, text, verbose_json, srt or vtt"
                ))
                .with_param("response_format"))
            }
        })
    }
}

/// The form's fields, as read.
#[derive(Debug, Default)]
struct Upload {
    /// The bytes and the file name the client gave.
    file: Option<(Vec<u8>, Option<String>)>,
    model: Option<String>,
    language: Option<String>,
    prompt: Option<String>,
    format: Format,
    temperature: Option<f32>,
    granularities: Vec<String>,
    stream: bool,
    include: Vec<String>,
}

impl Upload {
    /// Reads every field; a body over `limit` is a 413, a malformed one a 400.
    async fn read(mut form: Multipart, limit: usize) -> Result<Upload, ApiError> {
        let failed = |e: MultipartError| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(limit)
            } else {
                ApiError::bad_request(format!(
                    "the multipart body is malformed: {}",
                    e.body_text()
                ))
            }
        };
        let mut upload = Upload::default();
        while let Some(field) = form.next_field().await.map_err(failed)? {
            let name = field.name().unwrap_or("").to_string();
            if name == "file" {
                if upload.file.is_some() {
                    return Err(
                        ApiError::bad_request("send one 'file' per request").with_param("file")
                    );
                }
                let file_name = field.file_name().map(str::to_string);
                let bytes = field.bytes().await.map_err(failed)?;
                upload.file = Some((bytes.to_vec(), file_name));
                continue;
            }
            let text = field.text().await.map_err(failed)?;
            match name.as_str() {
                "model" => upload.model = Some(text),
                "language" => upload.language = Some(text).filter(|l| !l.trim().is_empty()),
                "prompt" => upload.prompt = Some(text).filter(|p| !p.is_empty()),
                "response_format" => upload.format = Format::parse(text.trim())?,
                "temperature" => upload.temperature = Some(temperature(&text)?),
                "timestamp_granularities[]" | "timestamp_granularities" => {
                    upload.granularities.push(text)
                }
                "stream" => upload.stream = text.trim().eq_ignore_ascii_case("true"),
                "include[]" | "include" => upload.include.push(text),
                _ => {}
            }
        }
        Ok(upload)
    }

    /// The checks that need no model (each a 400 naming its field), and the request.
    fn into_request(self, task: Task) -> Result<TranscriptionRequest, ApiError> {
        if self.stream {
            return Err(ApiError::bad_request(
                "streamed transcriptions are not supported: leave 'stream' out (the whole transcript comes in one response)",
            )
            .with_param("stream"));
        }
        if let Some(other) = self.include.first() {
            return Err(ApiError::bad_request(format!(
                "'include[]' asks for '{other}': this server returns no token log-probabilities for transcriptions"
            ))
            .with_param("include[]"));
        }
        for granularity in &self.granularities {
            match granularity.trim() {
                "segment" => {}
                "word" => {
                    return Err(ApiError::bad_request(
                        "word timestamps are not supported: 'timestamp_granularities[]' may be 'segment' (verbose_json has each segment's start and end)",
                    )
                    .with_param("timestamp_granularities[]"))
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "'timestamp_granularities[]' is '{other}': 'segment' (or 'word', which this server does not support)"
                    ))
                    .with_param("timestamp_granularities[]"))
                }
            }
        }
        let model = self.model.filter(|m| !m.trim().is_empty()).ok_or_else(|| {
            ApiError::bad_request("'model' is required: the speech-to-text model to use")
                .with_param("model")
        })?;
        let (audio, file_name) = self.file.ok_or_else(|| {
            ApiError::bad_request("'file' is required: the audio, as a multipart file field")
                .with_param("file")
        })?;
        let options = speech_options(task, self.language, self.prompt, self.temperature)?;
        Ok(TranscriptionRequest {
            model,
            audio,
            file_name,
            options,
            keep_alive: KeepAlive::Server,
        })
    }
}

/// The transcription options of a request, checked: a language Whisper does not know is a
/// 400 naming `language`. `temperature` 0 (or none) is Whisper's fallback ladder from 0;
/// above it, the ladder starts there (as OpenAI's `whisper-1` reads it).
pub(crate) fn speech_options(
    task: Task,
    language: Option<String>,
    prompt: Option<String>,
    temperature: Option<f32>,
) -> Result<TranscribeOptions, ApiError> {
    if let Some(language) = &language {
        if mlxk_engine::resolve_language(language.trim()).is_none() {
            return Err(ApiError::bad_request(format!(
                "'language' is '{language}': not a language Whisper knows (give an ISO-639-1 code such as 'en' or 'de', or its English name)"
            ))
            .with_param("language"));
        }
    }
    let mut options = TranscribeOptions {
        task,
        language: language.map(|l| l.trim().to_string()),
        initial_prompt: prompt,
        ..TranscribeOptions::default()
    };
    if let Some(t) = temperature.filter(|t| *t > 0.0) {
        options.temperatures = TranscribeOptions::temperatures_from(t);
    }
    Ok(options)
}

/// `temperature` as a form sends it (text), within 0 to 1.
fn temperature(text: &str) -> Result<f32, ApiError> {
    let bad = || {
        ApiError::bad_request(format!("'temperature' is '{text}': a number from 0 to 1"))
            .with_param("temperature")
    };
    let t: f32 = text.trim().parse().map_err(|_| bad())?;
    if !(0.0..=1.0).contains(&t) {
        return Err(bad());
    }
    Ok(t)
}

/// The transcript in the format asked for.
fn respond(transcript: &Transcript, format: Format) -> Response {
    let text = transcript.text.trim();
    let plain =
        |body: String, media: &'static str| ([(header::CONTENT_TYPE, media)], body).into_response();
    match format {
        Format::Json => Json(json!({"text": text, "usage": usage(transcript)})).into_response(),
        Format::Text => plain(format!("{text}\n"), "text/plain; charset=utf-8"),
        Format::VerboseJson => Json(verbose(transcript)).into_response(),
        Format::Srt => plain(srt(transcript), "text/plain; charset=utf-8"),
        Format::Vtt => plain(vtt(transcript), "text/vtt; charset=utf-8"),
    }
}

/// OpenAI bills Whisper by the second and says so in `usage`.
fn usage(transcript: &Transcript) -> Value {
    json!({"type": "duration", "seconds": transcript.duration.ceil() as u64})
}

/// `verbose_json`: the language by its English name in lowercase, as OpenAI writes it.
fn verbose(transcript: &Transcript) -> Value {
    let segments: Vec<Value> = transcript
        .segments
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "seek": s.seek,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": s.tokens,
                "temperature": decimal(s.temperature),
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            })
        })
        .collect();
    json!({
        "task": transcript.task.label(),
        "language": mlxk_engine::speech::language_name(&transcript.language)
            .unwrap_or(&transcript.language),
        "duration": transcript.duration,
        "text": transcript.text.trim(),
        "segments": segments,
        "usage": usage(transcript),
    })
}

/// An f32 as the decimal it was written as (0.4, not 0.4000000059604645 as a widened f64).
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// SubRip: numbered cues, hours always, a comma before the milliseconds.
fn srt(transcript: &Transcript) -> String {
    transcript
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "{}\n{} --> {}\n{}\n\n",
                i + 1,
                timestamp(s.start, true, ','),
                timestamp(s.end, true, ','),
                cue_text(&s.text)
            )
        })
        .collect()
}

/// WebVTT: hours only past the first hour, as mlx-whisper's writer has them.
fn vtt(transcript: &Transcript) -> String {
    let cues: String = transcript
        .segments
        .iter()
        .map(|s| {
            format!(
                "{} --> {}\n{}\n\n",
                timestamp(s.start, false, '.'),
                timestamp(s.end, false, '.'),
                cue_text(&s.text)
            )
        })
        .collect();
    format!("WEBVTT\n\n{cues}")
}

/// A cue's text cannot hold the cue arrow.
fn cue_text(text: &str) -> String {
    text.trim().replace("-->", "->")
}

/// `[HH:]MM:SS<marker>mmm`, as Whisper's writers format it (milliseconds rounded).
fn timestamp(seconds: f64, always_hours: bool, marker: char) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let (hours, minutes, secs, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let hours = if always_hours || hours > 0 {
        format!("{hours:02}:")
    } else {
        String::new()
    };
    format!("{hours}{minutes:02}:{secs:02}{marker}{ms:03}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlxk_engine::Segment;

    fn transcript() -> Transcript {
        let segment = |id: usize, start: f64, end: f64, text: &str| Segment {
            id,
            seek: 0,
            start,
            end,
            text: text.into(),
            tokens: vec![50364, 1000, 50464],
            temperature: 0.0,
            avg_logprob: -0.25,
            compression_ratio: 1.1,
            no_speech_prob: 0.01,
        };
        Transcript {
            text: " Hello there. A --> B".into(),
            language: "en".into(),
            task: Task::Transcribe,
            duration: 3725.5,
            segments: vec![
                segment(0, 0.0, 2.5, " Hello there."),
                segment(1, 3723.0, 3725.4996, " A --> B"),
            ],
        }
    }

    #[test]
    fn subtitles_are_written_as_whispers_writers_write_them() {
        assert_eq!(
            srt(&transcript()),
            "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n2\n01:02:03,000 --> 01:02:05,500\nA -> B\n\n"
        );
        assert_eq!(
            vtt(&transcript()),
            "WEBVTT\n\n00:00.000 --> 00:02.500\nHello there.\n\n01:02:03.000 --> 01:02:05.500\nA -> B\n\n"
        );
    }

    #[test]
    fn temperatures_and_languages_are_checked() {
        assert_eq!(temperature(" 0.4 ").unwrap(), 0.4);
        for bad in ["-0.1", "1.5", "warm", "NaN"] {
            assert_eq!(
                temperature(bad).unwrap_err().param,
                Some("temperature"),
                "{bad}"
            );
        }
        let options = speech_options(Task::Transcribe, None, None, Some(0.0)).unwrap();
        assert_eq!(
            options.temperatures,
            TranscribeOptions::default().temperatures
        );
        let options = speech_options(Task::Translate, None, Some("Names".into()), Some(0.5));
        let options = options.unwrap();
        assert_eq!(options.temperatures[0], 0.5);
        assert_eq!(
            (options.task, options.initial_prompt.as_deref()),
            (Task::Translate, Some("Names"))
        );
    }
}
