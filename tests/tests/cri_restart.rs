//! husklet killed with SIGKILL in the middle of its work: after a restart
//! every pod and container is listed once, in the state it really is in, and
//! calls the kill cut short are rolled back (nothing of them is listed, and
//! nothing is left once the pods are removed: no mount, pinned netns, IP,
//! iptables chain, veth, cgroup or shim).

mod cri_client;
mod cri_restart_support;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use cri_client::{Rt, connect, ctr_config, rt};
use cri_restart_support::{leftovers, log_count, pod_config, write_portmap_conflist};
use husk_tests::cri::CriNode;
use husk_tests::require_root;
use k8s_cri::v1 as cri;
use tokio::task::JoinSet;

const LOOP: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

async fn run_pod(c: &mut Rt, node: &CriNode, name: &str, port: i32) -> String {
    c.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(pod_config(node, name, port)),
        runtime_handler: String::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}\n{}", node.log()))
    .into_inner()
    .pod_sandbox_id
}

fn create_req(
    node: &CriNode,
    pod: &str,
    pod_name: &str,
    port: i32,
    name: &str,
) -> cri::CreateContainerRequest {
    cri::CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(ctr_config(name, LOOP)),
        sandbox_config: Some(pod_config(node, pod_name, port)),
    }
}

async fn list_pods(c: &mut Rt) -> Vec<cri::PodSandbox> {
    c.list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
}

async fn list_ctrs(c: &mut Rt) -> Vec<cri::Container> {
    c.list_containers(cri::ListContainersRequest::default())
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
}

async fn remove_all(c: &mut Rt) {
    for p in list_pods(c).await {
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: p.id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("RemovePodSandbox {}: {e}", p.id));
    }
}

fn assert_clean(node: &CriNode) {
    let left = leftovers(node);
    assert!(
        left.is_empty(),
        "left behind after every pod was removed:\n{}\nhusklet log:\n{}",
        left.join("\n"),
        node.log()
    );
}

#[test]
fn twenty_running_and_five_starting_containers_survive_a_kill_9() {
    require_root!();
    let mut node = CriNode::start();
    write_portmap_conflist(&node);
    let rt = rt();
    let (pods, running, starting) = rt.block_on(async {
        let mut c = connect(&node).await;
        let mut pods = vec![];
        for i in 0..5 {
            let name = format!("p{i}");
            pods.push((
                run_pod(&mut c, &node, &name, 8080 + i).await,
                name,
                8080 + i,
            ));
        }
        // Four running containers and one created per pod, created in parallel.
        let mut set = JoinSet::new();
        for (pod, name, port) in &pods {
            for j in 0..5 {
                let req = create_req(&node, pod, name, *port, &format!("c{j}"));
                let mut c = c.clone();
                set.spawn(async move {
                    let id = c
                        .create_container(req)
                        .await
                        .map(|r| r.into_inner().container_id);
                    (j, id)
                });
            }
        }
        let (mut running, mut starting) = (vec![], vec![]);
        while let Some(r) = set.join_next().await {
            let (j, id) = r.expect("join");
            let id = id.unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", node.log()));
            if j < 4 { &mut running } else { &mut starting }.push(id);
        }
        for id in &running {
            c.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("StartContainer {id}: {e}"));
        }
        (pods, running, starting)
    });

    // The five StartContainer calls in flight when husklet dies.
    rt.block_on(async {
        let c = connect(&node).await;
        let mut set = JoinSet::new();
        for id in &starting {
            let mut c = c.clone();
            let id = id.clone();
            set.spawn(async move {
                let _ = c
                    .start_container(cri::StartContainerRequest { container_id: id })
                    .await;
            });
        }
        tokio::time::sleep(Duration::from_millis(rand_ms(1, 25))).await;
        node.kill9();
        set.abort_all();
    });
    node.spawn();

    rt.block_on(async {
        let mut c = connect(&node).await;
        let listed = list_pods(&mut c).await;
        let ids: Vec<&str> = listed.iter().map(|p| p.id.as_str()).collect();
        let want: BTreeSet<&str> = pods.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(ids.len(), 5, "pods listed: {ids:?}");
        assert_eq!(ids.iter().copied().collect::<BTreeSet<_>>(), want);
        assert!(
            listed
                .iter()
                .all(|p| p.state == cri::PodSandboxState::SandboxReady as i32),
            "{listed:?}"
        );
        let ctrs = list_ctrs(&mut c).await;
        assert_eq!(ctrs.len(), 25, "containers listed: {ctrs:?}");
        let all: HashSet<&str> = running.iter().chain(&starting).map(String::as_str).collect();
        assert_eq!(
            ctrs.iter().map(|c| c.id.as_str()).collect::<HashSet<_>>(),
            all
        );
        for ct in &ctrs {
            if running.contains(&ct.id) {
                assert_eq!(
                    ct.state,
                    cri::ContainerState::ContainerRunning as i32,
                    "{ct:?}"
                );
            }
        }
        // The ones that were starting: what husklet says must be the truth.
        // Created → a start succeeds now; running → a start is refused and
        // the container answers an exec.
        let (mut were_running, mut were_created) = (0, 0);
        for id in &starting {
            let st = c
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                })
                .await
                .expect("ContainerStatus")
                .into_inner()
                .status
                .expect("status");
            let start = c
                .start_container(cri::StartContainerRequest {
                    container_id: id.clone(),
                })
                .await;
            match cri::ContainerState::try_from(st.state) {
                Ok(cri::ContainerState::ContainerCreated) => {
                    were_created += 1;
                    assert_eq!(st.started_at, 0);
                    start.unwrap_or_else(|e| {
                        panic!("container {id} listed as created cannot start: {e}")
                    });
                }
                Ok(cri::ContainerState::ContainerRunning) => {
                    were_running += 1;
                    assert!(st.started_at > 0, "{st:?}");
                    let e = start.expect_err("a running container started again");
                    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
                }
                other => panic!("container {id} came back as {other:?}"),
            }
            let r = c
                .exec_sync(cri::ExecSyncRequest {
                    container_id: id.clone(),
                    cmd: vec!["echo".into(), "alive".into()],
                    timeout: 10,
                })
                .await
                .unwrap_or_else(|e| panic!("exec in {id}: {e}"))
                .into_inner();
            assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "alive");
        }
        eprintln!(
            "after the kill: {were_running} of the starting ones ran ({} of them started by a call the kill cut short), {were_created} were still created",
            log_count(&node, "a StartContainer cut short had started it")
        );

        remove_all(&mut c).await;
        assert!(list_pods(&mut c).await.is_empty());
        assert!(list_ctrs(&mut c).await.is_empty());
    });
    assert_clean(&node);
}

#[test]
fn runs_and_creates_cut_short_by_kill_9_are_rolled_back() {
    require_root!();
    let mut node = CriNode::start();
    write_portmap_conflist(&node);
    let rt = rt();
    let (base, base_port) = (
        rt.block_on(async {
            let mut c = connect(&node).await;
            run_pod(&mut c, &node, "base", 9000).await
        }),
        9000,
    );
    let sandbox_rollback = "rolling back a RunPodSandbox cut short";
    // CreateContainer only records a container; the launch (rootfs, shim)
    // is StartContainer's: a kill in either is rolled back.
    let container_rollbacks = |node: &CriNode| {
        log_count(node, "rolling back a CreateContainer cut short")
            + log_count(node, "rolling back a StartContainer cut short")
    };
    // Kill at delays spread over the calls' length (RunPodSandbox and
    // CreateContainer take ~50–300 ms here); stop once both roll-backs were
    // seen a few times.
    let delays = [15, 40, 70, 100, 140, 180, 230, 300, 60, 120, 200, 30];
    let mut fired_pods = 0;
    for (round, delay) in delays.into_iter().enumerate() {
        rt.block_on(async {
            let c = connect(&node).await;
            let mut set = JoinSet::new();
            for k in 0..3 {
                let mut c1 = c.clone();
                let req = cri::RunPodSandboxRequest {
                    config: Some(pod_config(
                        &node,
                        &format!("r{round}-{k}"),
                        10000 + (round * 3 + k) as i32,
                    )),
                    runtime_handler: String::new(),
                };
                set.spawn(async move {
                    let _ = c1.run_pod_sandbox(req).await;
                });
                let mut c2 = c.clone();
                let req = create_req(&node, &base, "base", base_port, &format!("c{round}-{k}"));
                set.spawn(async move {
                    if let Ok(r) = c2.create_container(req).await {
                        let _ = c2
                            .start_container(cri::StartContainerRequest {
                                container_id: r.into_inner().container_id,
                            })
                            .await;
                    }
                });
            }
            fired_pods += 3;
            tokio::time::sleep(Duration::from_millis(delay + rand_ms(0, 20))).await;
            node.kill9();
            set.abort_all();
        });
        node.spawn();
        rt.block_on(async {
            let mut c = connect(&node).await;
            // No pod twice, each listed one ready and addressed.
            let pods = list_pods(&mut c).await;
            let names: Vec<String> = pods
                .iter()
                .map(|p| p.metadata.clone().unwrap_or_default().name)
                .collect();
            let unique: HashSet<&String> = names.iter().collect();
            assert_eq!(unique.len(), names.len(), "a pod listed twice: {names:?}");
            for p in &pods {
                let st = c
                    .pod_sandbox_status(cri::PodSandboxStatusRequest {
                        pod_sandbox_id: p.id.clone(),
                        verbose: false,
                    })
                    .await
                    .expect("PodSandboxStatus")
                    .into_inner()
                    .status
                    .expect("status");
                assert_eq!(st.state, cri::PodSandboxState::SandboxReady as i32);
                let ip = st.network.map(|n| n.ip).unwrap_or_default();
                assert!(!ip.is_empty(), "pod {} has no IP after the restart", p.id);
            }
            let ctrs = list_ctrs(&mut c).await;
            for ct in &ctrs {
                // Created (never started, or its start rolled back) or
                // running (started before the kill, or completed after it).
                assert!(
                    ct.state == cri::ContainerState::ContainerCreated as i32
                        || ct.state == cri::ContainerState::ContainerRunning as i32,
                    "a container neither created nor running: {ct:?}"
                );
            }
        });
        let (s, k) = (
            log_count(&node, sandbox_rollback),
            container_rollbacks(&node),
        );
        eprintln!(
            "round {round} (kill after {delay} ms): roll-backs so far: {s} sandboxes, {k} containers"
        );
        if s >= 2 && k >= 2 && round >= 5 {
            break;
        }
    }
    // A name whose RunPodSandbox was rolled back is free again.
    rt.block_on(async {
        let mut c = connect(&node).await;
        let listed: HashSet<String> = list_pods(&mut c)
            .await
            .into_iter()
            .map(|p| p.metadata.unwrap_or_default().name)
            .collect();
        let freed = (0..fired_pods)
            .map(|i| format!("r{}-{}", i / 3, i % 3))
            .find(|n| !listed.contains(n));
        if let Some(name) = freed {
            run_pod(&mut c, &node, &name, 0).await;
        }
        remove_all(&mut c).await;
    });
    assert_clean(&node);
    assert!(
        log_count(&node, sandbox_rollback) > 0 && container_rollbacks(&node) > 0,
        "no kill landed inside a RunPodSandbox and a CreateContainer: the test did not test the roll-back\n{}",
        node.log()
    );
}

fn rand_ms(lo: u64, hi: u64) -> u64 {
    use rand::Rng;
    rand::rng().random_range(lo..hi)
}
