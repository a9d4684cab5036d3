//! Headless Chromium driven over WebDriver (chromedriver, fantoccini), the way a person uses
//! the console: pages opened, forms filled, text read as rendered.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use order_testkit::settings;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// A laptop screen and a phone-sized one (CSS pixels).
pub const LAPTOP: (u32, u32) = (1366, 900);
pub const PHONE: (u32, u32) = (390, 844);

/// A chromedriver process and one browser session.
pub struct Browser {
    pub client: Client,
    _driver: Child,
}

fn found(name: &str) -> PathBuf {
    let path = settings()
        .get(name)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{name} is not set: the console's browser tests need Chromium and chromedriver; \
                 run `scripts/dev install` (Debian: chromium, chromium-driver)"
            )
        });
    assert!(
        path.exists(),
        "{name}={} does not exist: run `scripts/dev install`",
        path.display()
    );
    path
}

impl Browser {
    /// Start chromedriver on a free port and open a headless session at `size`.
    pub async fn start(size: (u32, u32)) -> Self {
        let chromedriver = found("ORDER_CHROMEDRIVER");
        let chrome = found("ORDER_CHROME");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let url = format!("http://127.0.0.1:{port}");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chrome,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-extensions",
                    "--no-first-run",
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    format!("--window-size={},{}", size.0, size.1),
                ],
            }),
        );
        // Chromium may take a while to start on a busy machine: retry the session.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let client = loop {
            let attempt =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities.clone())
                    .connect(&url)
                    .await;
            match attempt {
                Ok(client) => break client,
                Err(error) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "no WebDriver session from {} with {}: {error}",
                        chromedriver.display(),
                        chrome.display()
                    );
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        };
        let browser = Self {
            client,
            _driver: driver,
        };
        browser.resize(size).await;
        browser
    }

    /// Make the viewport `size` (the window's frame is added).
    pub async fn resize(&self, size: (u32, u32)) {
        let inner = self
            .js("return [window.innerWidth, window.innerHeight];")
            .await;
        let (iw, ih) = (
            inner[0].as_u64().unwrap_or(0),
            inner[1].as_u64().unwrap_or(0),
        );
        let (ow, oh) = self.client.get_window_size().await.unwrap();
        let width = u64::from(size.0) + ow.saturating_sub(iw);
        let height = u64::from(size.1) + oh.saturating_sub(ih);
        self.client
            .set_window_size(width as u32, height as u32)
            .await
            .unwrap();
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Run `script` in the page; its `return` value.
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// The text of the first element matching `css`, as rendered (`None` when absent).
    pub async fn text(&self, css: &str) -> Option<String> {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.ok(),
            Err(_) => None,
        }
    }

    /// An attribute of every element matching `css`.
    pub async fn attributes(&self, css: &str, attribute: &str) -> Vec<String> {
        let script = format!(
            "return Array.from(document.querySelectorAll({})).map(e => e.getAttribute({}) || '');",
            json!(css),
            json!(attribute)
        );
        self.js(&script)
            .await
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Wait until `script` returns `true` (at most `within`); panics with `what` otherwise.
    /// Returns how long it took.
    pub async fn wait_for(&self, what: &str, script: &str, within: Duration) -> Duration {
        let started = tokio::time::Instant::now();
        loop {
            if self.js(script).await == Value::Bool(true) {
                return started.elapsed();
            }
            if started.elapsed() > within {
                let url = self
                    .client
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                let body = self.text("body").await.unwrap_or_default();
                panic!("{what}: not within {within:?} on {url}; the page shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self, path: &std::path::Path) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// The whole page as one PNG: the window grown to the page's height first.
    pub async fn full_page_screenshot(&self, path: &std::path::Path, width: u32) {
        let height = self
            .js("return Math.ceil(document.documentElement.scrollHeight);")
            .await
            .as_u64()
            .unwrap_or(900)
            .clamp(400, 4000) as u32;
        self.resize((width, height)).await;
        // Charts follow the width; give them a frame to draw.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.screenshot(path).await;
    }

    /// No horizontal scrolling of the page itself (wide tables scroll in their own box).
    pub async fn fits_the_width(&self) -> bool {
        self.js("return document.documentElement.scrollWidth <= window.innerWidth + 1;")
            .await
            == Value::Bool(true)
    }

    /// How many Content Security Policy violations the page counted.
    pub async fn csp_violations(&self) -> u64 {
        self.js("return Number(document.documentElement.dataset.cspViolations || 0);")
            .await
            .as_u64()
            .unwrap_or(0)
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// The process id of chromedriver (Chromium runs below it).
    pub fn driver_pid(&self) -> Option<u32> {
        self._driver.id()
    }
}

impl Drop for Browser {
    /// A test that panics never closes its session: chromedriver alone would be killed (on
    /// drop) and its headless Chromium would outlive the test run. End the whole tree.
    fn drop(&mut self) {
        if let Some(pid) = self._driver.id() {
            order_testkit::process::kill_tree(pid);
        }
    }
}
