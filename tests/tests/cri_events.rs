//! GetContainerEvents over gRPC against a real `husklet serve`: created,
//! started, stopped (an exit nobody asked about) and deleted, with the pod's
//! status and its containers' statuses.

mod cri_client;

use std::time::Duration;

use cri_client::*;
use husk_tests::cri::CriNode;
use husk_tests::require_root;
use k8s_cri::v1 as cri;

type Events = tonic::Streaming<cri::ContainerEventResponse>;

async fn next(events: &mut Events) -> cri::ContainerEventResponse {
    tokio::time::timeout(Duration::from_secs(30), events.message())
        .await
        .expect("no event within 30 s")
        .expect("event stream error")
        .expect("event stream ended")
}

fn state_of(ev: &cri::ContainerEventResponse, id: &str) -> Option<cri::ContainerState> {
    ev.containers_statuses
        .iter()
        .find(|s| s.id == id)
        .map(|s| cri::ContainerState::try_from(s.state).unwrap())
}

#[test]
fn events_are_streamed_on_create_start_exit_and_delete() {
    require_root!();
    let node = CriNode::start();
    rt().block_on(async {
        let mut c = connect(&node).await;
        let mut events = c
            .get_container_events(cri::GetEventsRequest {})
            .await
            .expect("GetContainerEvents")
            .into_inner();
        // A second subscriber gets the same events.
        let mut other = c
            .get_container_events(cri::GetEventsRequest {})
            .await
            .expect("GetContainerEvents")
            .into_inner();
        let pc = pod_config(&node, "ev");
        let pod = run_pod(&mut c, &pc).await;
        // It exits on its own: nobody calls ContainerStatus before STOPPED.
        let id = create(&mut c, &pod, &pc, ctr_config("quick", "sleep 1; exit 3"))
            .await
            .expect("create");
        let ev = next(&mut events).await;
        assert_eq!(
            ev.container_event_type,
            cri::ContainerEventType::ContainerCreatedEvent as i32
        );
        assert_eq!(ev.container_id, id);
        assert!(ev.created_at > 0);
        let ps = ev.pod_sandbox_status.as_ref().expect("pod status");
        assert_eq!(ps.id, pod);
        assert_eq!(ps.state, cri::PodSandboxState::SandboxReady as i32);
        assert_eq!(
            state_of(&ev, &id),
            Some(cri::ContainerState::ContainerCreated)
        );

        c.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("start");
        let ev = next(&mut events).await;
        assert_eq!(
            ev.container_event_type,
            cri::ContainerEventType::ContainerStartedEvent as i32
        );
        assert_eq!(
            state_of(&ev, &id),
            Some(cri::ContainerState::ContainerRunning)
        );

        let ev = next(&mut events).await;
        assert_eq!(
            ev.container_event_type,
            cri::ContainerEventType::ContainerStoppedEvent as i32
        );
        assert_eq!(ev.container_id, id);
        assert_eq!(
            state_of(&ev, &id),
            Some(cri::ContainerState::ContainerExited)
        );
        let st = ev.containers_statuses.iter().find(|s| s.id == id).unwrap();
        assert_eq!(st.exit_code, 3);

        // StopContainer on a running one: STOPPED once.
        let long = start(&mut c, &pod, &pc, ctr_config("long", "sleep 1000")).await;
        let kinds: Vec<i32> = [next(&mut events).await, next(&mut events).await]
            .iter()
            .map(|e| e.container_event_type)
            .collect();
        assert_eq!(kinds, [0, 1]);
        c.stop_container(cri::StopContainerRequest {
            container_id: long.clone(),
            timeout: 0,
        })
        .await
        .expect("stop");
        let ev = next(&mut events).await;
        assert_eq!(
            (ev.container_event_type, ev.container_id.as_str()),
            (2, long.as_str())
        );

        c.remove_container(cri::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("remove");
        let ev = next(&mut events).await;
        assert_eq!(
            ev.container_event_type,
            cri::ContainerEventType::ContainerDeletedEvent as i32
        );
        assert_eq!(ev.container_id, id);
        assert_eq!(
            state_of(&ev, &id),
            None,
            "a deleted container has no status"
        );
        assert!(state_of(&ev, &long).is_some());

        // Removing a running container: STOPPED comes before DELETED.
        let r = start(&mut c, &pod, &pc, ctr_config("rm", "sleep 1000")).await;
        c.remove_container(cri::RemoveContainerRequest {
            container_id: r.clone(),
        })
        .await
        .expect("remove a running container");
        let mut seen = vec![];
        for _ in 0..4 {
            let e = next(&mut events).await;
            assert_eq!(e.container_id, r);
            seen.push(e.container_event_type);
        }
        assert_eq!(seen, [0, 1, 2, 3]);

        // The other subscriber saw the same sequence.
        let mut seen = vec![];
        for _ in 0..7 {
            let e = next(&mut other).await;
            seen.push((e.container_event_type, e.container_id == id));
        }
        assert_eq!(
            seen,
            [
                (0, true),
                (1, true),
                (2, true),
                (0, false),
                (1, false),
                (2, false),
                (3, true)
            ]
        );
    });
}

#[test]
fn exits_after_a_restart_are_streamed() {
    require_root!();
    let mut node = CriNode::start();
    let runtime = rt();
    let (pod, id) = runtime.block_on(async {
        let mut c = connect(&node).await;
        let pc = pod_config(&node, "restart");
        let pod = run_pod(&mut c, &pc).await;
        let id = start(&mut c, &pod, &pc, ctr_config("r", "sleep 1000")).await;
        (pod, id)
    });
    // husklet dies; the container lives on under its shim.
    node.kill9();
    node.spawn();
    runtime.block_on(async {
        let mut c = connect(&node).await;
        let mut events = c
            .get_container_events(cri::GetEventsRequest {})
            .await
            .expect("GetContainerEvents")
            .into_inner();
        c.stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .expect("stop");
        let ev = next(&mut events).await;
        assert_eq!(
            (ev.container_event_type, ev.container_id.as_str()),
            (
                cri::ContainerEventType::ContainerStoppedEvent as i32,
                id.as_str()
            )
        );
        assert_eq!(ev.pod_sandbox_status.map(|p| p.id), Some(pod));
    });
}
