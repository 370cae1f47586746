//! Who a token belongs to: `GET /api/whoami-v2`.

use serde::{Deserialize, Serialize};

use super::{HubClient, HubError};

/// The account a token authenticates, and its organizations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct HubUser {
    pub name: String,
    pub fullname: Option<String>,
    pub orgs: Vec<HubOrg>,
    /// What the token may do (`read`, `write`, `fineGrained`), when the Hub says.
    pub token_role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct HubOrg {
    pub name: String,
    /// The user's role in it (`read`, `write`, `admin`...), when the Hub says.
    pub role: Option<String>,
}

/// The parts of the Hub's answer we read; everything else (email, plan...) is ignored.
#[derive(Deserialize)]
struct WhoamiResponse {
    name: String,
    fullname: Option<String>,
    #[serde(default)]
    orgs: Vec<OrgResponse>,
    auth: Option<AuthResponse>,
}

#[derive(Deserialize)]
struct OrgResponse {
    name: String,
    #[serde(rename = "roleInOrg")]
    role_in_org: Option<String>,
}

#[derive(Deserialize)]
struct AuthResponse {
    #[serde(rename = "accessToken")]
    access_token: Option<AccessTokenResponse>,
}

#[derive(Deserialize)]
struct AccessTokenResponse {
    role: Option<String>,
}

impl HubClient {
    /// The account of this client's token. No token, or one the Hub does not accept, is
    /// [`HubError::Unauthorized`].
    pub async fn whoami(&self) -> Result<HubUser, HubError> {
        if !self.has_token() {
            return Err(HubError::Unauthorized {
                endpoint: self.endpoint().to_string(),
                status: 401,
                message: "no token".into(),
            });
        }
        let response = self.get_api("/api/whoami-v2").await?;
        let body = response.bytes().await.map_err(|e| self.network(&e))?;
        let parsed: WhoamiResponse = serde_json::from_slice(&body)
            .map_err(|e| self.invalid_response(format!("whoami: {e}")))?;
        Ok(HubUser {
            name: parsed.name,
            fullname: parsed.fullname,
            orgs: parsed
                .orgs
                .into_iter()
                .map(|org| HubOrg {
                    name: org.name,
                    role: org.role_in_org,
                })
                .collect(),
            token_role: parsed
                .auth
                .and_then(|auth| auth.access_token)
                .and_then(|token| token.role),
        })
    }
}
