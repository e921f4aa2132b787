//! Issues and comments: reads through the cache, writes through the pacer with a hidden
//! marker so a write that may have landed is found instead of duplicated.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::{Freshness, GitHub, Landed};
use crate::error::{Error, Result};

/// The fields of an issue this layer uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Issue {
    /// Its number.
    pub number: u64,
    /// Its title.
    pub title: String,
    /// `open` or `closed`.
    pub state: String,
    /// Its body.
    #[serde(default)]
    pub body: Option<String>,
    /// When it was closed (RFC 3339).
    #[serde(default)]
    pub closed_at: Option<String>,
}

/// The fields of a comment this layer uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Comment {
    /// Its id.
    pub id: u64,
    /// Its body.
    #[serde(default)]
    pub body: String,
    /// Who wrote it.
    pub user: Option<User>,
    /// The author's relation to the repository (`OWNER`, `MEMBER`, `COLLABORATOR`, `NONE`…).
    #[serde(default)]
    pub author_association: String,
    /// When it was last changed (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
}

/// A GitHub account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    /// The login.
    pub login: String,
}

/// `owner/name`, checked.
pub fn check_repo(repo: &str) -> Result<()> {
    let valid = |part: &str| {
        !part.is_empty()
            && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if valid(owner) && valid(name) => Ok(()),
        _ => Err(Error::Config(format!("repository {repo:?} is not owner/name"))),
    }
}

/// The hidden marker a write carries so it can be recognised later.
pub fn write_marker(id: &str) -> String {
    format!("<!-- ipfs-accelerate:write:{id} -->")
}

fn with_marker(body: &str) -> (String, String) {
    let marker = write_marker(&ulid::Ulid::new().to_string());
    (format!("{body}\n\n{marker}"), marker)
}

fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|e| Error::Decode { path: what.to_string(), reason: e.to_string() })
}

impl GitHub {
    /// Every comment on issue `number` of `repo`, all pages.
    pub async fn comments(
        &self,
        repo: &str,
        number: u64,
        freshness: Freshness,
    ) -> Result<Vec<Comment>> {
        check_repo(repo)?;
        let path = format!("/repos/{repo}/issues/{number}/comments?per_page=100");
        let items = self.get_all(&path, freshness).await?;
        items.into_iter().map(|item| decode(item, &path)).collect()
    }

    /// Comments on issue `number` (at most once, even if an attempt times out).
    pub async fn create_comment(&self, repo: &str, number: u64, body: &str) -> Result<Comment> {
        check_repo(repo)?;
        let (body, marker) = with_marker(body);
        let path = format!("/repos/{repo}/issues/{number}/comments");
        let repo_owned = repo.to_string();
        let landed: Landed<'_> = Box::new(move || {
            let (marker, repo) = (marker.clone(), repo_owned.clone());
            Box::pin(async move {
                let comments = self.comments(&repo, number, Freshness::Revalidate).await?;
                Ok(comments.into_iter().find(|c| c.body.contains(&marker)).map(|c| json!({"id": c.id, "body": c.body, "user": c.user.map(|u| json!({"login": u.login})), "author_association": c.author_association, "updated_at": c.updated_at})))
            })
        });
        let created =
            self.write(Method::POST, &path, repo, &json!({ "body": body }), Some(landed)).await?;
        decode(created, &path)
    }

    /// Replaces comment `id`'s body (a PATCH: sending it twice changes nothing).
    pub async fn update_comment(&self, repo: &str, id: u64, body: &str) -> Result<Comment> {
        check_repo(repo)?;
        let path = format!("/repos/{repo}/issues/comments/{id}");
        let updated =
            self.write(Method::PATCH, &path, repo, &json!({ "body": body }), None).await?;
        decode(updated, &path)
    }

    /// Deletes comment `id`.
    pub async fn delete_comment(&self, repo: &str, id: u64) -> Result<()> {
        check_repo(repo)?;
        let path = format!("/repos/{repo}/issues/comments/{id}");
        self.write(Method::DELETE, &path, repo, &Value::Null, None).await?;
        Ok(())
    }

    /// Opens an issue (at most once, even if an attempt times out).
    pub async fn create_issue(
        &self,
        repo: &str,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<Issue> {
        check_repo(repo)?;
        let (body, marker) = with_marker(body);
        let path = format!("/repos/{repo}/issues");
        let recent =
            format!("/repos/{repo}/issues?state=all&sort=created&direction=desc&per_page=50");
        let landed: Landed<'_> = Box::new(move || {
            let (marker, recent) = (marker.clone(), recent.clone());
            Box::pin(async move {
                let page = self.get(&recent, Freshness::Revalidate).await?;
                let issues: Vec<Value> = decode(page.body, &recent)?;
                Ok(issues
                    .into_iter()
                    .find(|i| i["body"].as_str().is_some_and(|b| b.contains(&marker))))
            })
        });
        let request = json!({ "title": title, "body": body, "labels": labels });
        let created = self.write(Method::POST, &path, repo, &request, Some(landed)).await?;
        decode(created, &path)
    }
}
