//! The card a person shows, read back as a person's tools read it: the PDF's text with
//! `pdftotext`, its QR code decoded from a `pdftoppm` render with `zbarimg`, the decoded link
//! followed without a token, and the page a phone shows rendered by headless Chromium — on the
//! embedded store and on Cosmos DB.

backends!([embedded, azure]:
    the_card_pdf_reads_back_and_its_qr_link_shows_the_public_view,
    links_that_are_tampered_expired_or_revoked_are_not_found,
);

use std::path::Path;
use std::process::Command;

use crate::support::*;
use serde_json::{Value, json};

fn tool(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?} cannot run ({e}): ./tools/test installs it"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// An Apple product bought 30 days ago with an extended warranty after the manufacturer's.
async fn product_with_two_coverages(app: &TestApp) -> (String, Value) {
    let form = Form::registration("Apple", "MacBook Air 13", "C02XK0ABJGH5", &day(-30), &fixture("invoice.pdf"));
    let card: Value = app.post_form("alice", form).await.json().await.unwrap();
    let id = card["id"].as_str().unwrap().to_owned();
    let starts = card["warrantyExpiresOn"].as_str().unwrap();
    let extended = json!({"kind": "extended", "provider": "Acme Care", "startsOn": starts, "months": 24});
    let resp = app.post_json("alice", &format!("/api/products/{id}/coverages"), &extended).await;
    assert_eq!(resp.status(), 201);
    let card: Value = app.get("alice", &format!("/api/products/{id}")).await.json().await.unwrap();
    (id, card)
}

/// The card PDF of `id`, saved in `dir`; returns the link its QR code holds.
async fn card_link(app: &TestApp, id: &str, dir: &Path) -> String {
    let resp = app.get("alice", &format!("/api/products/{id}/card.pdf")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    let pdf = resp.bytes().await.unwrap();
    std::fs::write(dir.join("card.pdf"), &pdf).unwrap();
    tool(
        Command::new("pdftoppm")
            .args(["-r", "150", "-png", "-singlefile"])
            .arg(dir.join("card.pdf"))
            .arg(dir.join("card")),
    );
    let decoded = tool(Command::new("zbarimg").args(["-q", "--raw"]).arg(dir.join("card.png")));
    String::from_utf8(decoded).unwrap().trim().to_owned()
}

async fn the_card_pdf_reads_back_and_its_qr_link_shows_the_public_view() {
    let app = spawn_app().await;
    let (id, card) = product_with_two_coverages(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let link = card_link(&app, &id, dir.path()).await;

    // The text a person (and a screen reader) gets from the PDF.
    let text =
        String::from_utf8(tool(Command::new("pdftotext").arg("-layout").arg(dir.path().join("card.pdf")).arg("-")))
            .unwrap();
    for expected in [
        "Apple",
        "MacBook Air 13",
        "C02XK0ABJGH5",
        &day(-30),
        "Manufacturer warranty",
        "Extended warranty",
        "Acme Care",
    ] {
        assert!(text.contains(expected), "{expected:?} not on the card:\n{text}");
    }
    for c in card["coverages"].as_array().unwrap() {
        assert!(text.contains(c["expiresOn"].as_str().unwrap()), "an expiry is missing:\n{text}");
    }
    assert!(text.contains(&format!("Covered today, until {}", card["coveredUntil"].as_str().unwrap())), "{text}");
    let fonts = String::from_utf8(tool(Command::new("pdffonts").arg(dir.path().join("card.pdf")))).unwrap();
    let font_line = fonts.lines().nth(2).unwrap_or_default();
    assert!(
        font_line.contains("CID TrueType") && font_line.matches("yes").count() == 3,
        "embedded, subset, with a ToUnicode map:\n{fonts}"
    );

    // The QR code's link, followed as a service desk would: no token.
    assert!(link.starts_with(&format!("{}/api/verify/", app.base)), "{link}");
    let resp = app.client.get(&link).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let view: Value = resp.json().await.unwrap();
    let keys: Vec<&str> = view.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["brand", "checkedOn", "coverages", "coveredToday", "coveredUntil", "linkExpiresAt", "model", "serialNumber"],
        "nothing of the owner, the invoice or the notes"
    );
    assert_eq!((view["brand"].as_str(), view["model"].as_str()), (Some("Apple"), Some("MacBook Air 13")));
    assert_eq!(view["serialNumber"], "••••••••JGH5");
    assert_eq!((view["coveredToday"].as_bool(), &view["coveredUntil"]), (Some(true), &card["coveredUntil"]));
    let statuses: Vec<(&str, &str)> = view["coverages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["kind"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("manufacturer", "active"), ("extended", "upcoming")]);

    // A phone's browser gets a page: rendered by headless Chromium at a phone's size.
    let resp = app.client.get(&link).header("accept", "text/html,application/xhtml+xml").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    // On the blocking pool: the test's runtime must stay free to serve Chromium's request.
    let (url, at) = (link.clone(), dir.path().to_owned());
    let (visible, png) = tokio::task::spawn_blocking(move || render_in_chromium(&url, &at)).await.unwrap();
    for expected in [
        "Covered today",
        &format!("until {}", card["coveredUntil"].as_str().unwrap()),
        "Apple",
        "MacBook Air 13",
        "••••••••JGH5",
        "Extended warranty",
        "upcoming",
    ] {
        assert!(visible.contains(expected), "{expected:?} not visible on the page:\n{visible}");
    }
    assert!(!visible.contains("C02XK0ABJGH5"), "the full serial number is not shown");
    assert_eq!(png_size(&png), (390, 844), "a phone-sized screenshot");
    assert!(png.len() > 5_000, "the screenshot has content ({} bytes)", png.len());
}

async fn links_that_are_tampered_expired_or_revoked_are_not_found() {
    let app = spawn_app().await;
    let (id, _) = product_with_two_coverages(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let link = card_link(&app, &id, dir.path()).await;
    assert_eq!(app.client.get(&link).send().await.unwrap().status(), 200);

    // One character changed.
    let (head, last) = link.split_at(link.len() - 5);
    let flipped = format!("{head}{}{}", if last.starts_with('A') { 'B' } else { 'A' }, &last[1..]);
    let (s, p) = problem(app.client.get(&flipped).send().await.unwrap()).await;
    assert_eq!((s, p["code"].as_str()), (404, Some("not_found")));
    // Expired, and for a product that does not exist: signed with the service's own key.
    let key = std::fs::read(app.dir.path().join("verification-key")).unwrap();
    let key = String::from_utf8(key).unwrap();
    let pid: uuid::Uuid = id.parse().unwrap();
    let expired =
        warranty::card::token::issue(key.trim().as_bytes(), pid, 0, chrono::Utc::now() - chrono::Duration::minutes(1));
    assert_eq!(app.client.get(format!("{}/api/verify/{expired}", app.base)).send().await.unwrap().status(), 404);
    let valid_for_none = warranty::card::token::issue(
        key.trim().as_bytes(),
        uuid::Uuid::now_v7(),
        0,
        chrono::Utc::now() + chrono::Duration::days(1),
    );
    assert_eq!(app.client.get(format!("{}/api/verify/{valid_for_none}", app.base)).send().await.unwrap().status(), 404);
    let genuine =
        warranty::card::token::issue(key.trim().as_bytes(), pid, 0, chrono::Utc::now() + chrono::Duration::days(1));
    assert_eq!(app.client.get(format!("{}/api/verify/{genuine}", app.base)).send().await.unwrap().status(), 200);

    // The owner withdraws every link; only another user's attempt changes nothing.
    let resp = app
        .client
        .delete(format!("{}/api/products/{id}/verification", app.base))
        .bearer_auth(token("mallory"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(app.client.get(&link).send().await.unwrap().status(), 200);
    let resp = app
        .client
        .delete(format!("{}/api/products/{id}/verification", app.base))
        .bearer_auth(token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    for revoked in [&link, &format!("{}/api/verify/{genuine}", app.base)] {
        assert_eq!(app.client.get(revoked).send().await.unwrap().status(), 404);
    }
    let resp = app.client.get(&link).header("accept", "text/html").send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await.unwrap().contains("This link is not valid"), "a phone gets a page, not JSON");
    // A new card carries a new link that works.
    let fresh = card_link(&app, &id, dir.path()).await;
    assert_ne!(fresh, link);
    assert_eq!(app.client.get(&fresh).send().await.unwrap().status(), 200);
    // The card itself needs the owner's token.
    assert_eq!(app.client.get(format!("{}/api/products/{id}/card.pdf", app.base)).send().await.unwrap().status(), 401);
    assert_eq!(app.get("mallory", &format!("/api/products/{id}/card.pdf")).await.status(), 404);
}

/// The page at `url` as headless Chromium shows it on a 390 × 844 screen: its visible text
/// (printed to PDF, read back with `pdftotext`) and a screenshot (PNG bytes).
fn render_in_chromium(url: &str, dir: &Path) -> (String, Vec<u8>) {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("chromium is missing: ./tools/test installs it");
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        "--window-size=390,844",
    ];
    let profile = dir.join("chromium-profile");
    let shot = dir.join("page.png");
    let printed = dir.join("page.pdf");
    tool(
        Command::new(chromium)
            .args(common)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--screenshot={}", shot.display()))
            .arg(url),
    );
    tool(
        Command::new(chromium)
            .args(common)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--no-pdf-header-footer")
            .arg(format!("--print-to-pdf={}", printed.display()))
            .arg(url),
    );
    let text = String::from_utf8(tool(Command::new("pdftotext").arg(&printed).arg("-"))).unwrap();
    (text, std::fs::read(&shot).unwrap())
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    (be(&png[16..20]), be(&png[20..24]))
}
