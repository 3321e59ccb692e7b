//! Rendering one page: a fresh browser context per render (no cookies or cache shared
//! between tasks) whose proxy is a [`PolicyProxy`] of its own, so every request the page
//! makes is checked and pinned, and every refusal is attributable to this render.

use std::sync::Arc;

use chromiumoxide::cdp::browser_protocol::network::{
    EventRequestWillBeSent, EventResponseReceived, ResourceType,
};
use chromiumoxide::cdp::browser_protocol::page::{EventLifecycleEvent, FrameId};
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use d402_runtime::FetchFailure;
use futures_util::StreamExt;
use tokio::time::Instant;
use url::Url;

use crate::fetch::RawPage;
use crate::policy::{UrlRefusal, check_url};
use crate::pool::{BrowserPool, Instance};
use crate::proxy::{DENIED_HEADER, PolicyProxy};
use crate::resolve::ResolveError;

/// Content-Type of a rendered body: the serialised DOM, always UTF-8 HTML.
pub const RENDERED_CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// A rendered page and the Chromium version that rendered it.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The page (body = serialised DOM).
    pub page: RawPage,
    /// Chromium's version, e.g. `156.0.7339.0`.
    pub chromium_version: String,
}

/// Snapshotter name for pages rendered by `chromium_version`.
pub fn render_snapshotter(chromium_version: &str) -> String {
    format!(
        "d402-render/{} (chromium {chromium_version})",
        env!("CARGO_PKG_VERSION")
    )
}

/// Renders `url` in headless Chromium. The caller bounds the time.
pub async fn render(
    pool: &BrowserPool,
    url: &str,
    max_bytes: u64,
) -> Result<Rendered, FetchFailure> {
    let parsed = Url::parse(url).map_err(|e| FetchFailure::InvalidUrl(format!("{url:?}: {e}")))?;
    // The first hop is checked here so a refused URL fails before a browser is involved.
    let target = check_url(&parsed, pool.resolver().policy()).map_err(|e| match e {
        UrlRefusal::Invalid(m) => FetchFailure::InvalidUrl(m),
        UrlRefusal::Denied(m) => FetchFailure::Denied(m),
    })?;
    pool.resolver()
        .resolve(&target)
        .await
        .map_err(|e| match e {
            ResolveError::Denied(m) => FetchFailure::Denied(format!("{url}: {m}")),
            ResolveError::NotFound(m) => FetchFailure::Upstream(m),
        })?;
    let _permit = pool.tab_permit().await;
    // One retry on a fresh Chromium when the current one turns out to be dead.
    for attempt in 0..2 {
        let instance = pool.instance().await.map_err(FetchFailure::Upstream)?;
        let outcome = tokio::select! {
            outcome = render_in(pool, &instance, &parsed, max_bytes) => outcome,
            () = instance.died() => Err(Attempt::Crashed),
        };
        match outcome {
            Ok(page) => {
                return Ok(Rendered {
                    page,
                    chromium_version: instance.version.clone(),
                });
            }
            Err(Attempt::Failed(failure)) => return Err(failure),
            Err(Attempt::Crashed) => {
                tracing::warn!(attempt, %url, "Chromium died during a render");
                pool.discard(&instance).await;
            }
        }
    }
    Err(FetchFailure::Upstream(format!(
        "{url}: Chromium crashed twice while rendering"
    )))
}

enum Attempt {
    Failed(FetchFailure),
    Crashed,
}

async fn render_in(
    pool: &BrowserPool,
    instance: &Arc<Instance>,
    url: &Url,
    max_bytes: u64,
) -> Result<RawPage, Attempt> {
    let proxy = PolicyProxy::start(pool.resolver().clone(), pool.config().connect_timeout)
        .await
        .map_err(|e| {
            Attempt::Failed(FetchFailure::Upstream(format!(
                "cannot start the policy proxy: {e}"
            )))
        })?;
    let browser = &instance.browser;
    let cdp = |what: &'static str| move |e| cdp_error(instance, what, e);
    let context = browser
        .create_browser_context(CreateBrowserContextParams {
            dispose_on_detach: Some(true),
            proxy_server: Some(proxy.url()),
            proxy_bypass_list: Some("<-loopback>".into()),
            origins_with_universal_network_access: None,
        })
        .await
        .map_err(cdp("create a browser context"))?;
    let mut params = CreateTargetParams::new("about:blank");
    params.browser_context_id = Some(context.clone());
    let result = async {
        let page = browser.new_page(params).await.map_err(cdp("open a tab"))?;
        let outcome = load(&page, instance, pool, url, max_bytes, &proxy).await;
        let _ = page.close().await;
        outcome
    }
    .await;
    if let Err(e) = browser.dispose_browser_context(context).await {
        tracing::debug!(error = %e, "could not dispose a browser context");
    }
    if !proxy.log().denied().is_empty() {
        tracing::info!(%url, denied = ?proxy.log().denied(), "render: the policy proxy refused requests");
    }
    result
}

/// Maps a DevTools error: a dead browser is a crash (retried), anything else a failure.
fn cdp_error(instance: &Instance, what: &str, error: chromiumoxide::error::CdpError) -> Attempt {
    if instance.is_dead() {
        Attempt::Crashed
    } else {
        Attempt::Failed(FetchFailure::Upstream(format!("Chromium: {what}: {error}")))
    }
}

async fn load(
    page: &chromiumoxide::Page,
    instance: &Instance,
    pool: &BrowserPool,
    url: &Url,
    max_bytes: u64,
    proxy: &PolicyProxy,
) -> Result<RawPage, Attempt> {
    let cdp = |what: &'static str| move |e| cdp_error(instance, what, e);
    let mut responses = page
        .event_listener::<EventResponseReceived>()
        .await
        .map_err(cdp("listen"))?;
    let mut started = page
        .event_listener::<EventRequestWillBeSent>()
        .await
        .map_err(cdp("listen"))?;
    let mut lifecycle = page
        .event_listener::<EventLifecycleEvent>()
        .await
        .map_err(cdp("listen"))?;
    if let Err(e) = page.goto(url.as_str()).await {
        if let Some(reason) = proxy.log().denied().first() {
            return Err(Attempt::Failed(FetchFailure::Denied(reason.clone())));
        }
        return Err(cdp("navigate")(e));
    }
    let main_frame = page.mainframe().await.map_err(cdp("main frame"))?;

    // Settle on Chromium's own lifecycle signals for the main frame: `networkIdle` (no
    // connection for 500 ms), or `networkAlmostIdle` (at most two) once no request has
    // started for `network_idle` — so long polls do not hold the page. At most `max_settle_time`.
    let config = pool.config();
    let give_up = Instant::now() + config.max_settle_time;
    let mut document: Option<EventResponseReceived> = None;
    let mut almost_idle = false;
    let mut quiet_since = Instant::now();
    let is_main = |frame: &FrameId| main_frame.as_ref().is_none_or(|m| m == frame);
    loop {
        let idle_at = quiet_since + config.network_idle;
        tokio::select! {
            Some(event) = responses.next() => {
                if event.r#type == ResourceType::Document && event.frame_id.as_ref().is_none_or(is_main) {
                    document = Some((*event).clone());
                }
            }
            Some(_) = started.next() => quiet_since = Instant::now(),
            Some(event) = lifecycle.next() => {
                if is_main(&event.frame_id) {
                    match event.name.as_str() {
                        "networkIdle" => break,
                        "networkAlmostIdle" => almost_idle = true,
                        _ => {}
                    }
                }
            }
            () = tokio::time::sleep_until(idle_at), if almost_idle => break,
            () = tokio::time::sleep_until(give_up) => {
                tracing::debug!(%url, "render: settle time used up");
                break;
            }
        }
    }

    let (status, denied) = match &document {
        Some(event) => (event.response.status, header(event, DENIED_HEADER)),
        None => (200, None),
    };
    if let Some(reason) = denied {
        return Err(Attempt::Failed(FetchFailure::Denied(reason)));
    }
    let html = page.content().await.map_err(cdp("read the DOM"))?;
    if html.len() as u64 > max_bytes {
        return Err(Attempt::Failed(FetchFailure::TooLarge(format!(
            "rendered DOM of {} bytes is over the {max_bytes} byte cap",
            html.len()
        ))));
    }
    let final_url = page
        .url()
        .await
        .map_err(cdp("read the URL"))?
        .unwrap_or_else(|| url.to_string());
    Ok(RawPage {
        final_url,
        status: u16::try_from(status).unwrap_or(0),
        content_type: RENDERED_CONTENT_TYPE.to_string(),
        body: html.into_bytes(),
    })
}

/// A response header, by case-insensitive name.
fn header(event: &EventResponseReceived, name: &str) -> Option<String> {
    event
        .response
        .headers
        .inner()
        .as_object()?
        .iter()
        .find_map(|(k, v)| {
            k.eq_ignore_ascii_case(name)
                .then(|| v.as_str().unwrap_or_default().to_string())
        })
}
