use super::*;

fn server() -> url::Url {
    url::Url::parse("https://fleet.example:8443/ddi").unwrap()
}

const DEPLOYMENT: &str = r#"{"id":"8","deployment":{"download":"forced","update":"attempt",
  "maintenanceWindow":"available","chunks":[{"part":"os","version":"2.0.0","name":"demo",
  "artifacts":[{"filename":"demo-2.0.0.slate","size":1234,
   "hashes":{"sha1":"aa","md5":"bb","sha256":"0101010101010101010101010101010101010101010101010101010101010101"},
   "_links":{"download":{"href":"https://fleet.example:8443/ddi/DEFAULT/controller/v1/d/softwaremodules/1/artifacts/demo-2.0.0.slate"},
             "download-http":{"href":"http://fleet.example/x"}}}]}]},
  "actionHistory":{"status":"RUNNING","messages":[]}}"#;

#[test]
fn a_base_resource_names_its_deployment_cancel_and_config_links() {
    let body = br#"{"config":{"polling":{"sleep":"00:05:00"}},"_links":{
        "deploymentBase":{"href":"https://fleet.example:8443/ddi/DEFAULT/controller/v1/d/deploymentBase/8?c=-2129030598"},
        "cancelAction":{"href":"https://fleet.example:8443/ddi/DEFAULT/controller/v1/d/cancelAction/9"},
        "configData":{"href":"https://fleet.example:8443/ddi/DEFAULT/controller/v1/d/configData"}}}"#;
    let a = read_base(&server(), body).unwrap();
    assert_eq!(a.sleep, Some(300));
    assert_eq!(a.deployment.as_ref().map(|d| d.1), Some(8));
    assert_eq!(a.cancel.as_ref().map(|d| d.1), Some(9));
    assert!(a.config_data.is_some());
    let idle = read_base(&server(), br#"{"config":{"polling":{"sleep":"12:00:00"}}}"#).unwrap();
    assert_eq!(
        idle,
        Asked {
            sleep: Some(43200),
            ..Asked::default()
        }
    );
}

#[test]
fn links_to_other_hosts_ports_schemes_or_paths_are_refused() {
    for href in [
        "https://evil.example:8443/ddi/DEFAULT/controller/v1/d/deploymentBase/8",
        "https://fleet.example:9999/ddi/DEFAULT/controller/v1/d/deploymentBase/8",
        "http://fleet.example:8443/ddi/DEFAULT/controller/v1/d/deploymentBase/8",
        "https://fleet.example:8443/other/deploymentBase/8",
        "/ddi/DEFAULT/controller/v1/d/deploymentBase/8",
    ] {
        let body = format!(r#"{{"_links":{{"deploymentBase":{{"href":"{href}"}}}}}}"#);
        let e = read_base(&server(), body.as_bytes()).unwrap_err();
        assert!(matches!(e, DdiError::ForeignLink { .. }), "{href}: {e}");
    }
}

#[test]
fn garbage_and_huge_documents_are_refused_with_where() {
    let e = read_base(&server(), b"{\"config\": [").unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
    let huge = vec![b' '; MAX_DOCUMENT + 1];
    let e = read_base(&server(), &huge).unwrap_err();
    assert!(e.to_string().contains("more than"), "{e}");
    let e = read_base(
        &server(),
        br#"{"_links":{"deploymentBase":{"href":"https://fleet.example:8443/ddi/x/deploymentBase/abc"}}}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("action id"), "{e}");
}

#[test]
fn sleep_is_hh_mm_ss_held_within_bounds() {
    assert_eq!(parse_sleep("00:00:30"), Some(30));
    assert_eq!(parse_sleep("00:00:01"), Some(SLEEP_BOUNDS.0));
    assert_eq!(parse_sleep("48:00:00"), Some(SLEEP_BOUNDS.1));
    for bad in [
        "", "5", "00:60:00", "00:00:60", "a:b:c", "1:2:3:4", "-1:00:00",
    ] {
        assert_eq!(parse_sleep(bad), None, "{bad}");
    }
}

#[test]
fn a_deployment_offers_its_slate_artefact_with_size_and_sha256() {
    let o = read_deployment(&server(), DEPLOYMENT.as_bytes()).unwrap();
    assert_eq!(o.action, 8);
    assert_eq!(o.version, "2.0.0");
    assert_eq!(o.size, 1234);
    assert_eq!(o.sha256, [1; 32]);
    assert_eq!(o.update, Handling::Attempt);
    assert!(!o.stage_only());
    assert!(o.url.as_str().ends_with("demo-2.0.0.slate"));
}

#[test]
fn a_deployment_without_sha256_size_or_a_server_link_is_refused() {
    let no_sha = DEPLOYMENT.replace(
        r#""sha256":"0101010101010101010101010101010101010101010101010101010101010101""#,
        r#""sha256":"01""#,
    );
    let e = read_deployment(&server(), no_sha.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("no sha256"), "{e}");
    let no_size = DEPLOYMENT.replace(r#""size":1234,"#, "");
    let e = read_deployment(&server(), no_size.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("size"), "{e}");
    let elsewhere = DEPLOYMENT.replace(
        "https://fleet.example:8443/ddi/DEFAULT",
        "https://cdn.example/DEFAULT",
    );
    let e = read_deployment(&server(), elsewhere.as_bytes()).unwrap_err();
    assert!(matches!(e, DdiError::ForeignLink { .. }), "{e}");
    let two = DEPLOYMENT.replace(
        r#""artifacts":[{"#,
        r#""artifacts":[{"filename":"b.slate","size":1,"hashes":{}},{"#,
    );
    let e = read_deployment(&server(), two.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("2 *.slate"), "{e}");
}

#[test]
fn download_only_and_closed_windows_stage() {
    let d = DEPLOYMENT.replace(r#""update":"attempt""#, r#""update":"skip""#);
    assert!(read_deployment(&server(), d.as_bytes())
        .unwrap()
        .stage_only());
    let w = DEPLOYMENT.replace(r#""available""#, r#""unavailable""#);
    assert!(read_deployment(&server(), w.as_bytes())
        .unwrap()
        .stage_only());
}

#[test]
fn feedback_is_the_json_ddi_documents() {
    let f = Feedback::new(
        8,
        Execution::Proceeding,
        Finished::None,
        Some(Progress { cnt: 1, of: 4 }),
        vec!["downloading".into()],
    );
    assert_eq!(
        serde_json::to_string(&f).unwrap(),
        r#"{"id":"8","status":{"execution":"proceeding","result":{"finished":"none","progress":{"cnt":1,"of":4}},"details":["downloading"]}}"#
    );
    assert_eq!(
        read_cancel(br#"{"id":"11","cancelAction":{"stopId":"8"}}"#),
        Ok(8)
    );
    assert!(read_cancel(br#"{"id":"11","cancelAction":{"stopId":"x"}}"#).is_err());
}
