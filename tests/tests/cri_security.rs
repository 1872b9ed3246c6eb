//! Container security contexts through a real `husklet serve` and a tonic
//! client, checked from inside the containers: capabilities, seccomp
//! (RuntimeDefault, Unconfined, Localhost), users and groups, read-only
//! rootfs, no_new_privs, masked paths, privileged, devices; bad contexts get
//! an error naming the field and leave nothing behind.

mod cri_client;

use cri_client::*;
use husk_tests::cri::CriNode;
use husk_tests::require_root;
use k8s_cri::v1 as cri;
use tonic::Code;

fn seccomp(kind: cri::security_profile::ProfileType, path: &str) -> Option<cri::SecurityProfile> {
    Some(cri::SecurityProfile {
        profile_type: kind as i32,
        localhost_ref: path.into(),
    })
}

/// Our own effective capabilities (what husklet, our child, holds).
fn own_cap_eff() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn runtime_default_confines_and_the_context_is_applied() {
    require_root!();
    let node = CriNode::start();
    rt().block_on(async {
        let mut c = connect(&node).await;
        let pc = pod_config(&node, "sec");
        let pod = run_pod(&mut c, &pc).await;

        // Root with containerd's default set, NET_RAW dropped, SYS_TIME added,
        // the default seccomp profile.
        let mut cfg = ctr_config("root", "sleep 1000");
        let sc = ctr_sc(&mut cfg);
        sc.capabilities = Some(cri::Capability {
            add_capabilities: vec!["SYS_TIME".into()],
            drop_capabilities: vec!["NET_RAW".into()],
            ..Default::default()
        });
        sc.seccomp = seccomp(cri::security_profile::ProfileType::RuntimeDefault, "");
        let root = start(&mut c, &pod, &pc, cfg).await;
        // containerd's default set is 0xa80425fb; -NET_RAW (bit 13), +SYS_TIME (bit 25).
        assert_eq!(
            status_field(&mut c, &root, "CapEff").await,
            "00000000aa0405fb"
        );
        assert_eq!(
            status_field(&mut c, &root, "CapBnd").await,
            "00000000aa0405fb"
        );
        assert_eq!(status_field(&mut c, &root, "Seccomp").await, "2");
        assert_eq!(status_field(&mut c, &root, "NoNewPrivs").await, "0");
        // Unprivileged user namespaces need no capability: only seccomp stops them.
        let (code, _, err) = sh(&mut c, &root, "unshare -U true").await;
        assert_ne!(code, 0, "unshare -U ran under RuntimeDefault");
        assert!(err.contains("Operation not permitted"), "{err}");
        let (code, _, err) = sh(&mut c, &root, "mkdir -p /tmp/m && mount -t tmpfs t /tmp/m").await;
        assert_ne!(code, 0);
        assert!(
            err.contains("Operation not permitted") || err.contains("denied"),
            "{err}"
        );
        // What ordinary programs need still works: sockets, fork and exec.
        let err = sh_ok(
            &mut c,
            &root,
            "(nc -l -p 8080 >/dev/null 2>/tmp/nc.err &); sleep 0.5; cat /tmp/nc.err",
        )
        .await;
        assert_eq!(err, "", "nc could not listen");
        assert_eq!(sh_ok(&mut c, &root, "echo $(echo forked)").await, "forked");
        // Masked and read-only paths, containerd's defaults.
        assert_eq!(sh_ok(&mut c, &root, "wc -c < /proc/keys").await, "0");
        assert_eq!(
            sh_ok(&mut c, &root, "[ -c /proc/keys ] && echo masked").await,
            "masked"
        );
        let (code, _, _) = sh(&mut c, &root, "echo 1 > /proc/sys/kernel/ns_last_pid").await;
        assert_ne!(code, 0, "/proc/sys is writable");
        assert!(
            sh_ok(&mut c, &root, "grep ' /sys ' /proc/mounts")
                .await
                .contains("ro,")
        );

        // A non-root user with groups, a read-only rootfs and no_new_privs.
        let mut cfg = ctr_config("user", "sleep 1000");
        let sc = ctr_sc(&mut cfg);
        sc.run_as_user = Some(cri::Int64Value { value: 1000 });
        sc.run_as_group = Some(cri::Int64Value { value: 1001 });
        sc.supplemental_groups = vec![2000, 3000];
        sc.readonly_rootfs = true;
        sc.no_new_privs = true;
        let user = start(&mut c, &pod, &pc, cfg).await;
        assert_eq!(sh_ok(&mut c, &user, "id -u").await, "1000");
        assert_eq!(sh_ok(&mut c, &user, "id -g").await, "1001");
        let groups = sh_ok(&mut c, &user, "id -G").await;
        let groups: Vec<&str> = groups.split_whitespace().collect();
        assert!(
            groups.contains(&"2000") && groups.contains(&"3000"),
            "{groups:?}"
        );
        let reported = c
            .container_status(cri::ContainerStatusRequest {
                container_id: user.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
            .user
            .and_then(|u| u.linux)
            .expect("ContainerStatus.user");
        assert_eq!(
            (reported.uid, reported.gid, reported.supplemental_groups),
            (1000, 1001, vec![2000, 3000])
        );
        assert_eq!(status_field(&mut c, &user, "NoNewPrivs").await, "1");
        assert_eq!(
            status_field(&mut c, &user, "CapEff").await,
            "0000000000000000"
        );
        // Unconfined unless asked: nothing set means no filter (as containerd).
        assert_eq!(status_field(&mut c, &user, "Seccomp").await, "0");
        let (code, _, err) = sh(&mut c, &user, "touch /written").await;
        assert_ne!(code, 0, "the read-only rootfs took a write");
        assert!(err.contains("Read-only file system"), "{err}");
        // The writable mounts stay writable.
        sh_ok(&mut c, &user, "touch /dev/shm/ok").await;
    });
}

#[test]
fn privileged_and_unconfined_are_not_confined() {
    require_root!();
    let node = CriNode::start();
    rt().block_on(async {
        let mut c = connect(&node).await;
        // A privileged container needs a privileged sandbox.
        let pc = pod_config(&node, "plain");
        let plain = run_pod(&mut c, &pc).await;
        let mut cfg = ctr_config("priv", "sleep 1000");
        ctr_sc(&mut cfg).privileged = true;
        let r = create(&mut c, &plain, &pc, cfg.clone()).await;
        expect_err(r, Code::InvalidArgument, "security_context.privileged");

        let mut pc = pod_config(&node, "priv");
        pod_sc(&mut pc).privileged = true;
        let pod = run_pod(&mut c, &pc).await;
        ctr_sc(&mut cfg).seccomp = seccomp(cri::security_profile::ProfileType::Unconfined, "");
        let id = start(&mut c, &pod, &pc, cfg).await;
        assert_eq!(status_field(&mut c, &id, "CapEff").await, own_cap_eff());
        assert_eq!(status_field(&mut c, &id, "Seccomp").await, "0");
        sh_ok(&mut c, &id, "unshare -U true").await;
        sh_ok(
            &mut c,
            &id,
            "mkdir -p /tmp/m && mount -t tmpfs t /tmp/m && umount /tmp/m",
        )
        .await;
        // No masked paths, /sys read-write, the host's devices.
        assert_eq!(
            sh_ok(&mut c, &id, "[ -f /proc/keys ] && echo file").await,
            "file"
        );
        assert!(
            sh_ok(&mut c, &id, "grep ' /sys ' /proc/mounts")
                .await
                .contains("rw,")
        );
        let host_devs = std::fs::read_dir("/dev")
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with("loop"))
            })
            .count();
        if host_devs > 0 {
            let inside = sh_ok(&mut c, &id, "ls /dev | grep -c '^loop' || true").await;
            assert_eq!(inside, host_devs.to_string());
        }
    });
}

#[test]
fn localhost_profiles_and_devices() {
    require_root!();
    let node = CriNode::start();
    rt().block_on(async {
        let mut c = connect(&node).await;
        let pc = pod_config(&node, "lh");
        let pod = run_pod(&mut c, &pc).await;
        // A Docker-format profile that allows everything but mkdir/mkdirat.
        let profile = node.dir.path().join("no-mkdir.json");
        std::fs::write(
            &profile,
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
        )
        .unwrap();
        let mut cfg = ctr_config("lh", "sleep 1000");
        ctr_sc(&mut cfg).seccomp = seccomp(
            cri::security_profile::ProfileType::Localhost,
            profile.to_str().unwrap(),
        );
        // And a device: the host's /dev/null as /dev/mynull, read-only.
        cfg.devices = vec![cri::Device {
            container_path: "/dev/mynull".into(),
            host_path: "/dev/null".into(),
            permissions: "r".into(),
        }];
        let id = start(&mut c, &pod, &pc, cfg.clone()).await;
        assert_eq!(status_field(&mut c, &id, "Seccomp").await, "2");
        let (code, _, err) = sh(&mut c, &id, "mkdir /tmp/d").await;
        assert_ne!(code, 0);
        assert!(err.contains("Permission denied"), "{err}");
        sh_ok(&mut c, &id, "touch /tmp/f").await;
        assert_eq!(sh_ok(&mut c, &id, "stat -c %t,%T /dev/mynull").await, "1,3");
        sh_ok(&mut c, &id, "cat /dev/mynull").await;

        // The same with the deprecated path field.
        let mut old = ctr_config("lh-path", "sleep 1000");
        #[allow(deprecated)]
        {
            ctr_sc(&mut old).seccomp_profile_path = format!("localhost/{}", profile.display());
        }
        let id = start(&mut c, &pod, &pc, old).await;
        let (code, _, _) = sh(&mut c, &id, "mkdir /tmp/d").await;
        assert_ne!(code, 0);

        // Bad contexts: an error naming the field, and no container.
        let before = c
            .list_containers(cri::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers
            .len();
        let state_before = node.state_entries("containers");
        let mut bad = ctr_config("bad", "true");
        ctr_sc(&mut bad).seccomp = seccomp(
            cri::security_profile::ProfileType::Localhost,
            "/nonexistent/profile.json",
        );
        let r = create(&mut c, &pod, &pc, bad.clone()).await;
        expect_err(r, Code::InvalidArgument, "seccomp.localhost_ref");
        ctr_sc(&mut bad).seccomp = None;
        ctr_sc(&mut bad).capabilities = Some(cri::Capability {
            add_capabilities: vec!["CAP_NOPE".into()],
            ..Default::default()
        });
        let r = create(&mut c, &pod, &pc, bad.clone()).await;
        expect_err(r, Code::InvalidArgument, "capabilities.add_capabilities[0]");
        ctr_sc(&mut bad).capabilities = None;
        bad.devices = vec![cri::Device {
            container_path: "/dev/x".into(),
            host_path: "/etc/hostname".into(),
            permissions: "rw".into(),
        }];
        let r = create(&mut c, &pod, &pc, bad.clone()).await;
        expect_err(r, Code::InvalidArgument, "devices[0].host_path");
        let after = c
            .list_containers(cri::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers
            .len();
        assert_eq!(before, after);
        assert_eq!(state_before, node.state_entries("containers"));
        // The name is free again.
        bad.devices.clear();
        create(&mut c, &pod, &pc, bad).await.expect("create after the errors");
    });
}
