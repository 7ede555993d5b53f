//! The admin dashboard's server side over real sockets: the UI files (or the "not built"
//! page), sign-in with a session cookie, CSRF on state-changing calls, throttled and audited
//! failures, and the app API mirrored for a signed-in admin.

mod support;

use std::time::{Duration, Instant};

use ringcast::core::admin::{AdminAccount, FAILED_SIGNINS_PER_MINUTE, hash_password};
use serde_json::{Value, json};
use support::{APP_ID, TestServer, WsClient, raw_http, temp_dir};

const PASSWORD: &str = "correct horse battery";

fn with_admin(c: &mut ringcast::config::Config) {
    c.admins = vec![AdminAccount {
        name: "ops".into(),
        password_hash: hash_password(PASSWORD),
    }];
}

/// A response: status, head (lower-cased) and body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn request(
    server: &TestServer,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut text = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        server.addr,
        body.len()
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    let raw = String::from_utf8_lossy(&raw_http(server.addr, text.as_bytes())).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    Answer {
        status: head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// Signs in; returns the `Cookie` header value and the CSRF token.
fn sign_in(server: &TestServer) -> (String, String) {
    let answer = request(
        server,
        "POST",
        "/admin/api/login",
        &[],
        &json!({"name": "ops", "password": PASSWORD}).to_string(),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let cookie = answer.header("set-cookie").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_owned();
    (pair, answer.json()["csrf"].as_str().unwrap().to_owned())
}

#[test]
fn without_a_built_ui_admin_says_how_to_build_it() {
    // A configured directory wins over the dashboard built into the binary, if any.
    let empty = temp_dir("admin-ui-empty");
    let server = TestServer::start_with(1, |c| c.server.admin_ui_dir = Some(empty.clone()));
    let redirect = request(&server, "GET", "/admin", &[], "");
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header("location"), Some("/admin/"));
    let page = request(&server, "GET", "/admin/", &[], "");
    assert_eq!(page.status, 503);
    assert!(
        page.body.contains("scripts/build-admin-ui"),
        "{}",
        page.body
    );
    // The rest of the server is unaffected.
    assert_eq!(request(&server, "GET", "/up", &[], "").status, 200);
}

#[test]
fn a_built_ui_is_served_with_its_content_types_and_a_strict_policy() {
    let dir = temp_dir("admin-ui");
    std::fs::write(dir.join("index.html"), "<!doctype html><title>x</title>").unwrap();
    std::fs::write(dir.join("admin_ui_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let server = TestServer::start_with(1, |c| c.server.admin_ui_dir = Some(dir.clone()));
    let index = request(&server, "GET", "/admin/", &[], "");
    assert_eq!(index.status, 200);
    assert!(index.body.contains("<title>x</title>"));
    let csp = index.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("'wasm-unsafe-eval'"));
    let wasm = request(&server, "GET", "/admin/admin_ui_bg.wasm", &[], "");
    assert_eq!(wasm.header("content-type"), Some("application/wasm"));
    assert_eq!(
        request(&server, "GET", "/admin/missing.js", &[], "").status,
        404
    );
    // Path tricks do not leave the directory.
    assert_eq!(
        request(&server, "GET", "/admin/..%2fCargo.toml", &[], "").status,
        404
    );
}

#[test]
fn admins_sign_in_and_state_changes_need_the_csrf_token() {
    let server = TestServer::start_with(1, with_admin);
    // Nothing without a session.
    assert_eq!(
        request(&server, "GET", "/admin/api/apps", &[], "").status,
        401
    );
    assert_eq!(
        request(&server, "GET", "/admin/api/session", &[], "").status,
        401
    );

    let (cookie, csrf) = sign_in(&server);
    let session = request(
        &server,
        "GET",
        "/admin/api/session",
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(session.json(), json!({"name": "ops", "csrf": csrf}));
    let apps = request(
        &server,
        "GET",
        "/admin/api/apps",
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(apps.status, 200);
    let app = &apps.json()["apps"][0];
    assert_eq!(app["id"], APP_ID);
    assert!(
        !apps.body.contains(support::SECRET),
        "the secret leaked: {}",
        apps.body
    );

    // A test event from the dashboard reaches a subscriber, but only with the CSRF token.
    let mut subscriber = WsClient::connect(server.addr);
    subscriber.subscribe("news");
    let event = json!({"name": "note", "channel": "news", "data": "{\"x\":1}"}).to_string();
    let target = format!("/admin/api/apps/{APP_ID}/events");
    let refused = request(&server, "POST", &target, &[("Cookie", &cookie)], &event);
    assert_eq!(refused.status, 403, "{}", refused.body);
    let wrong = [("Cookie", cookie.as_str()), ("X-CSRF-Token", "nope")];
    assert_eq!(
        request(&server, "POST", &target, &wrong, &event).status,
        403
    );
    let headers = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    assert_eq!(
        request(&server, "POST", &target, &headers, &event).status,
        200
    );
    let got = subscriber.recv_until(Duration::from_secs(5), |m| m["event"] == "note");
    assert_eq!(got["data"], "{\"x\":1}");

    // Channel queries work without app signatures.
    let channels = request(
        &server,
        "GET",
        &format!("/admin/api/apps/{APP_ID}/channels"),
        &[("Cookie", &cookie)],
        "",
    );
    assert!(
        channels.json()["channels"]["news"].is_object(),
        "{}",
        channels.body
    );

    // Signing out ends the session.
    let out = request(&server, "POST", "/admin/api/logout", &headers, "");
    assert_eq!(out.status, 200);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        request(
            &server,
            "GET",
            "/admin/api/apps",
            &[("Cookie", &cookie)],
            ""
        )
        .status,
        401
    );
}

#[test]
fn failed_sign_ins_are_throttled_and_land_in_the_security_feed() {
    let server = TestServer::start_with(1, with_admin);
    let wrong = json!({"name": "ops", "password": "guess"}).to_string();
    for _ in 0..FAILED_SIGNINS_PER_MINUTE {
        let answer = request(&server, "POST", "/admin/api/login", &[], &wrong);
        assert_eq!(answer.status, 401);
        assert_eq!(answer.json()["error"], "wrong name or password");
    }
    let throttled = request(&server, "POST", "/admin/api/login", &[], &wrong);
    assert_eq!(throttled.status, 429);
    assert!(throttled.header("retry-after").is_some());
    let garbage = request(&server, "POST", "/admin/api/login", &[], "{");
    assert_eq!(garbage.status, 400);

    // From another address the right password still works, and the feed shows the failures.
    let server_addr = server.addr;
    let login = json!({"name": "ops", "password": PASSWORD}).to_string();
    let from_elsewhere = {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 2], 0)).into())
            .unwrap();
        socket.connect(&server_addr.into()).unwrap();
        let mut stream: std::net::TcpStream = socket.into();
        use std::io::{Read, Write};
        write!(
            stream,
            "POST /admin/api/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{login}",
            login.len()
        )
        .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    };
    assert!(
        from_elsewhere.starts_with("HTTP/1.1 200"),
        "{from_elsewhere}"
    );
    let cookie = from_elsewhere
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let feed = request(
            &server,
            "GET",
            "/admin/api/security-events?user=ops",
            &[("Cookie", &cookie)],
            "",
        );
        let denials = feed.json()["records"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter(|r| r["action"] == "admin_signin" && r["decision"] == "deny")
                    .count()
            })
            .unwrap_or(0);
        if denials as u32 > FAILED_SIGNINS_PER_MINUTE {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "failed sign-ins not in the feed: {}",
            feed.body
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn in_a_cluster_the_overview_names_the_node_and_counts_every_nodes_connections() {
    let redis = support::redis::RedisServer::start();
    let server = TestServer::start_with(2, |c| {
        with_admin(c);
        c.server.cluster = Some(ringcast::config::ClusterConfig {
            redis: ringcast::config::RedisTarget::parse(&redis.url()).unwrap(),
            prefix: "ringcast".into(),
            node_timeout: Duration::from_secs(3),
        });
    });
    // Another node's heartbeat reported 5 connections of the app.
    let key = format!("ringcast:k:{APP_ID}");
    support::redis::redis_cmd(redis.port, &["HSET", &key, "another-node", "5"]);
    let (cookie, _) = sign_in(&server);
    let _one = WsClient::connect(server.addr);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = request(
            &server,
            "GET",
            "/admin/api/overview",
            &[("Cookie", &cookie)],
            "",
        );
        let overview: ringcast_shared::Overview = serde_json::from_str(&answer.body).unwrap();
        let cluster = overview.cluster.clone().expect("a cluster part");
        let app = &overview.apps[0];
        if cluster.in_sync && app.cluster_connections == Some(6) {
            assert_eq!(app.connections, 1);
            assert_eq!(cluster.nodes, 1);
            assert_eq!(cluster.node.len(), 16, "{cluster:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{overview:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_overview_streams_live_and_follows_connections() {
    use std::io::{BufRead, BufReader, Write};
    let server = TestServer::start_with(2, with_admin);
    let (cookie, _) = sign_in(&server);
    let _one = WsClient::connect(server.addr);
    let snapshot = request(
        &server,
        "GET",
        "/admin/api/overview",
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(snapshot.status, 200, "{}", snapshot.body);
    let overview: ringcast_shared::Overview = serde_json::from_str(&snapshot.body).unwrap();
    assert_eq!(overview.connections, 1);
    assert_eq!(overview.shards.len(), 2);
    assert_eq!(overview.apps[0].id, APP_ID);
    assert_eq!(overview.cluster, None, "a single node has no cluster part");
    assert_eq!(overview.apps[0].cluster_connections, None);

    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET /admin/api/live HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(stream).lines();
    let head: Vec<String> = lines
        .by_ref()
        .map_while(Result::ok)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(head[0].starts_with("HTTP/1.1 200"), "{head:?}");
    assert!(
        head.iter().any(|h| h == "Content-Type: text/event-stream"),
        "{head:?}"
    );
    let mut next = || -> ringcast_shared::Overview {
        let line = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.starts_with("data: "))
            .expect("an event");
        serde_json::from_str(&line["data: ".len()..]).unwrap()
    };
    assert_eq!(next().connections, 1);
    let mut more: Vec<WsClient> = (0..3).map(|_| WsClient::connect(server.addr)).collect();
    more[0].subscribe("watched");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let overview = next();
        if overview.connections == 4 && overview.subscriptions == 1 {
            assert_eq!(overview.shards.iter().sum::<i64>(), 4);
            break;
        }
        assert!(Instant::now() < deadline, "{overview:?}");
    }
    // A client signed in with a tenant counts toward it until it leaves.
    let mut tenant_user = WsClient::connect(server.addr);
    let user_data = json!({"id": "u-1", "user_info": {"tenant_id": "acme"}}).to_string();
    let auth = ringcast::core::auth::sign_signin(
        support::KEY,
        &ringcast::core::auth::hmac_key(support::SECRET),
        &tenant_user.socket_id,
        &user_data,
    );
    tenant_user.send(&json!({"event": "pusher:signin", "data": {
        "auth": auth, "user_data": user_data,
    }}));
    tenant_user.recv_until(Duration::from_secs(5), |m| {
        m["event"] == "pusher:signin_success"
    });
    let acme = |o: &ringcast_shared::Overview| {
        o.tenants
            .iter()
            .find(|t| t.tenant == "acme")
            .map_or(0, |t| t.connections)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while acme(&next()) != 1 {
        assert!(
            Instant::now() < deadline,
            "the tenant's connection was not counted"
        );
    }
    drop(tenant_user);
    while acme(&next()) != 0 {
        assert!(
            Instant::now() < deadline + Duration::from_secs(5),
            "still counted"
        );
    }

    // Without a session there is no stream.
    let refused = request(&server, "GET", "/admin/api/live", &[], "");
    assert_eq!(refused.status, 401);
}

#[test]
fn admins_watch_a_disputed_chat_only_while_it_is_disputed() {
    use ringcast::core::policy::{Alternative, RuleConfig};
    let server = TestServer::start_with(2, |c| {
        with_admin(c);
        let mut rule = RuleConfig::new("escrow-chat", "tenant.{tenant}.escrow.{id}.chat");
        rule.tenant = Some("{tenant}".into());
        rule.resource = Some("escrow:{id}".into());
        rule.allow = vec![
            Alternative {
                participant: true,
                role: None,
                attributes: Default::default(),
            },
            Alternative {
                participant: false,
                role: Some("admin".into()),
                attributes: [("status".to_owned(), "DISPUTED".to_owned())].into(),
            },
        ];
        c.apps[0].policies = vec![rule];
    });
    let (cookie, csrf) = sign_in(&server);
    let headers = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let disputes_path = format!("/admin/api/apps/{APP_ID}/disputes");
    let channel = "private-tenant.acme.escrow.42.chat";

    // Admin subscribes with the dashboard's signatures; `DISPUTED` decides.
    let watch = |expect_ok: bool| {
        let mut admin = WsClient::connect(server.addr);
        let auth = request(
            &server,
            "POST",
            &format!("/admin/api/apps/{APP_ID}/pusher-auth"),
            &headers,
            &json!({"socket_id": admin.socket_id, "channel": channel, "tenant": "acme"})
                .to_string(),
        );
        assert_eq!(auth.status, 200, "{}", auth.body);
        let auth = auth.json();
        admin.send(&json!({"event": "pusher:signin", "data": auth["signin"]}));
        admin.recv_until(Duration::from_secs(5), |m| {
            m["event"] == "pusher:signin_success"
        });
        admin.send(&json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth["channel_auth"]}}));
        let reply = admin.recv_until(Duration::from_secs(5), |m| {
            m["event"] == "pusher_internal:subscription_succeeded"
                || m["event"] == "pusher:subscription_error"
        });
        assert_eq!(
            reply["event"] == "pusher_internal:subscription_succeeded",
            expect_ok,
            "{reply}"
        );
        admin
    };

    let set = |status: &str| {
        let body = json!({"tenant": "acme", "participants": ["buyer-1", "seller-9"], "attributes": {"status": status}});
        let path = format!("/apps/{APP_ID}/resources/escrow/42");
        assert_eq!(
            support::api(server.addr, "PUT", &path, &body.to_string(), &[]).0,
            200
        );
    };
    set("OPEN");
    assert_eq!(
        request(&server, "GET", &disputes_path, &[("Cookie", &cookie)], "").json()["disputes"],
        json!([])
    );
    drop(watch(false));

    set("DISPUTED");
    let listed = request(&server, "GET", &disputes_path, &[("Cookie", &cookie)], "").json();
    assert_eq!(listed["key"], support::KEY);
    assert_eq!(listed["disputes"][0]["id"], "42");
    assert_eq!(
        listed["disputes"][0]["channels"],
        json!(["tenant.acme.escrow.42.chat"])
    );
    let mut admin = watch(true);
    let note = json!({"name": "message", "channel": channel, "data": "{\"text\":\"where is my parcel?\"}"});
    assert_eq!(
        support::api(
            server.addr,
            "POST",
            &format!("/apps/{APP_ID}/events"),
            &note.to_string(),
            &[]
        )
        .0,
        200
    );
    let got = admin.recv_until(Duration::from_secs(5), |m| m["event"] == "message");
    assert_eq!(got["data"], "{\"text\":\"where is my parcel?\"}");

    // Signing needs the CSRF token, and only private channels are signed.
    let no_csrf = request(
        &server,
        "POST",
        &format!("/admin/api/apps/{APP_ID}/pusher-auth"),
        &[("Cookie", &cookie)],
        &json!({"socket_id": "1.1"}).to_string(),
    );
    assert_eq!(no_csrf.status, 403);
    let public = request(
        &server,
        "POST",
        &format!("/admin/api/apps/{APP_ID}/pusher-auth"),
        &headers,
        &json!({"socket_id": "1.1", "channel": "news"}).to_string(),
    );
    assert_eq!(public.status, 400);
}

#[test]
fn a_token_with_role_admin_signs_in_and_one_without_is_refused() {
    use ringcast::core::auth::jwt::sign_hs256;
    const TOKEN_SECRET: &str = "admin tokens are signed with this secret";
    let server = TestServer::start_with(1, |c| {
        c.admin_jwt = Some(ringcast::config::JwtConfig::hs256(TOKEN_SECRET));
    });
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let token = |roles: Value| {
        sign_hs256(
            &json!({"sub": "dana", "roles": roles, "exp": exp}),
            TOKEN_SECRET.as_bytes(),
        )
    };
    let login = |token: String| {
        request(
            &server,
            "POST",
            "/admin/api/login",
            &[],
            &json!({"token": token}).to_string(),
        )
    };
    let refused = login(token(json!(["support"])));
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.json()["error"],
        "invalid token, or no role admin in it"
    );
    let accepted = login(token(json!(["admin"])));
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.json()["name"], "dana");
    let cookie = accepted
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        request(
            &server,
            "GET",
            "/admin/api/apps",
            &[("Cookie", &cookie)],
            ""
        )
        .status,
        200
    );
}
