//! The files in `deploy/` (systemd unit, container recipe, Kubernetes
//! manifests) against the binary: they start `gust` with flags it has, on
//! the port their node.toml listens on, and probe a path a real cluster node
//! answers (checked by starting one with that node.toml, its engine URLs
//! pointed at the local NATS and PostgreSQL).

mod common;
mod engine_probe;

use std::path::Path;

use common::*;
use engine_probe::{NATS, NatsCleanup, POSTGRES, psql, unique_app};

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `node.toml` embedded in the ConfigMap (`node.toml: |` block).
fn configmap_node_toml(yaml: &str) -> String {
    let start = yaml
        .find("node.toml: |")
        .expect("node.toml in the ConfigMap");
    yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every number after `key` in `text` (e.g. all `containerPort: N`).
fn numbers_after(text: &str, key: &str) -> Vec<u16> {
    text.match_indices(key)
        .map(|(i, _)| {
            text[i + key.len()..]
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or_else(|_| panic!("no number after {key}"))
        })
        .collect()
}

fn listen_port(node_toml: &str) -> u16 {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("node.toml");
    std::fs::write(&p, node_toml).unwrap();
    let config = gust_manifest::NodeConfig::load(&p).expect("a valid node.toml");
    assert!(config.cluster.is_some(), "a cluster node config");
    config.listen.port()
}

#[test]
fn deploy_files_agree_with_the_binary() {
    let node = read("deploy/node.toml");
    let unit = read("deploy/systemd/gust.service");
    let image = read("deploy/container/Containerfile");
    let k8s = read("deploy/kubernetes/gust.yaml");
    let k8s_node = configmap_node_toml(&k8s);

    // One port everywhere.
    let port = listen_port(&node);
    assert_eq!(listen_port(&k8s_node), port);
    for (what, ports) in [
        ("containerPort", numbers_after(&k8s, "containerPort:")),
        ("probe port", numbers_after(&k8s, "port: ")),
        ("targetPort", numbers_after(&k8s, "targetPort:")),
        ("EXPOSE", numbers_after(&image, "EXPOSE")),
        ("HEALTHCHECK", numbers_after(&image, "127.0.0.1:")),
    ] {
        assert!(!ports.is_empty(), "no {what}");
        assert!(
            ports
                .iter()
                .all(|p| *p == port || (what == "probe port" && *p == 80)),
            "{what}: {ports:?} but node.toml listens on {port}"
        );
    }

    // One command line everywhere, and the binary has it.
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let exec: Vec<&str> = exec.split_whitespace().skip(1).collect();
    assert_eq!(exec, ["serve", "--config", "/etc/gust/node.toml"]);
    assert!(image.contains(r#"CMD ["serve", "--config", "/etc/gust/node.toml"]"#));
    assert!(k8s.contains(r#"args: ["serve", "--config", "/etc/gust/node.toml"]"#));
    assert!(k8s.contains("mountPath: /etc/gust/node.toml, subPath: node.toml"));
    assert!(k8s_node.contains("admin_key_file = \"/etc/gust/key/admin.key\""));
    assert!(k8s.contains("mountPath: /etc/gust/key"));
    let (code, help, err) = gust(&["serve", "--help"], Path::new("."));
    assert_eq!(code, 0, "{err}");
    assert!(help.contains("--config"), "{help}");

    // The probe path is what a node serves: start one with the example
    // config, engines pointed here.
    let probe = "/_gust/health";
    assert!(k8s.matches(&format!("path: {probe}")).count() == 2);
    assert!(image.contains(probe));
    let cluster = unique_app("deploy-files");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("admin.key"),
        "a-test-admin-key-of-some-length\n",
    )
    .unwrap();
    let local = node
        .replace("0.0.0.0:7071", "127.0.0.1:0")
        .replace("name = \"prod\"", &format!("name = \"{cluster}\""))
        .replace("nats://nats:4222", NATS)
        .replace("postgres://gust@postgres:5432/gust", POSTGRES)
        .replace(
            "/etc/gust/admin.key",
            &dir.path().join("admin.key").display().to_string(),
        )
        .replace(
            "/var/lib/gust",
            &dir.path().join("data").display().to_string(),
        );
    let config = dir.path().join("node.toml");
    std::fs::write(&config, local).unwrap();
    let mut cmd = gust_command();
    cmd.arg("serve").arg("--config").arg(&config);
    let mut running = start_ready(cmd);
    let r = get(&format!("{}{probe}", running.url), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(running.stop(), Some(0), "{}", running.stderr());
    psql(&format!(
        "DELETE FROM gust_cluster_nodes WHERE cluster = '{cluster}'"
    ));
    drop(NatsCleanup::new(&cluster));
}
