//! Checking generation parameters against what a vendor's API can carry.

use temper_core::{ChatRequest, GenerationParams, ResponseFormat};

use crate::{ProviderError, Shared};

/// What to do with a parameter a vendor cannot honour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnsupportedParams {
    /// Refuse the request, naming the parameter.
    #[default]
    Error,
    /// Drop the parameter and say so through the warning sink.
    Warn,
}

/// A parameter a vendor has no equivalent for, and why.
pub(crate) type Unsupported = (&'static str, &'static str);

/// `params` without the ones in `unsupported` that are set: refused or dropped with a warning,
/// as the policy says, never ignored silently.
pub(crate) fn check(
    shared: &Shared,
    params: &GenerationParams,
    unsupported: &[Unsupported],
) -> Result<GenerationParams, ProviderError> {
    let mut kept = params.clone();
    for &(name, reason) in unsupported {
        if !is_set(params, name) {
            continue;
        }
        refuse(shared, name, reason)?;
        // `none` clears any parameter; the name comes from our own table, so it is known.
        let _ = kept.set(name, "none");
    }
    Ok(kept)
}

/// Something the vendor cannot carry: refused, or dropped with a warning when the profile says
/// so (`Ok(())` then tells the caller to leave it out).
pub(crate) fn refuse(shared: &Shared, name: &'static str, reason: &'static str) -> Result<(), ProviderError> {
    let vendor = shared.vendor.name();
    match shared.unsupported {
        UnsupportedParams::Error => Err(ProviderError::UnsupportedParam { vendor, name, reason }),
        UnsupportedParams::Warn => {
            (shared.warn)(format!("{vendor} cannot honour `{name}` ({reason}); dropped it"));
            Ok(())
        }
    }
}

/// Refuses (or, when the caller allows, drops with a warning) the response formats only the
/// local engine enforces; says whether the request's format may be sent.
pub(crate) fn vendor_can_enforce_format(
    shared: &Shared,
    request: &ChatRequest,
) -> Result<bool, ProviderError> {
    match request.structured_format() {
        Some(ResponseFormat::Grammar { .. } | ResponseFormat::Regex { .. }) => {
            refuse(
                shared,
                "response_format",
                "grammar and regex formats are Temper extensions that only the local engine enforces",
            )?;
            Ok(false)
        }
        _ => Ok(true),
    }
}

/// Whether parameter `name` is set (unset ones are left out of the serialized form).
fn is_set(params: &GenerationParams, name: &str) -> bool {
    serde_json::to_value(params).ok().and_then(|v| v.get(name).cloned()).is_some()
}

/// Refuses a value outside the range a vendor accepts (Anthropic's temperature is 0 to 1).
pub(crate) fn within(
    vendor: &'static str,
    name: &'static str,
    value: Option<f32>,
    max: f32,
    reason: &'static str,
) -> Result<(), ProviderError> {
    match value {
        Some(v) if v > max => Err(ProviderError::UnsupportedParam { vendor, name, reason }),
        _ => Ok(()),
    }
}
