//! Encoding checked against hand-assembled bytes; decoding against entries
//! laid out the way the kernel dumps them (nested flag set, attributes husk
//! skips in between).

use super::*;

/// An attribute, padded, written out by hand (independent of `Builder`).
fn nla(ty: u16, value: &[u8]) -> Vec<u8> {
    let mut v = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(value);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

fn nest(ty: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    nla(ty | 0x8000, &parts.concat())
}

fn nlmsg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = ((16 + payload.len()) as u32).to_ne_bytes().to_vec();
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(&flags.to_ne_bytes());
    v.extend_from_slice(&seq.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    v.extend_from_slice(payload);
    v
}

fn v4_tuple(src: [u8; 4], dst: [u8; 4], proto: u8, sp: u16, dp: u16) -> Vec<Vec<u8>> {
    vec![
        nest(1, &[nla(1, &src), nla(2, &dst)]),
        nest(
            2,
            &[
                nla(1, &[proto]),
                nla(2, &sp.to_be_bytes()),
                nla(3, &dp.to_be_bytes()),
            ],
        ),
    ]
}

fn udp_flow() -> Flow {
    Flow {
        orig: Tuple {
            src: "192.168.77.2".parse().unwrap(),
            dst: "192.168.77.1".parse().unwrap(),
            proto: 17,
            ports: Some((40000, 5300)),
        },
        zone: Some(7),
        id: Some(0xdead_beef),
    }
}

#[test]
fn dump_request_bytes() {
    let r = dump_request(libc::AF_INET as u8, 9);
    // type = CTNETLINK << 8 | CT_GET; flags = REQUEST | DUMP.
    assert_eq!(r, nlmsg(0x0101, 0x0301, 9, &[2, 0, 0, 0]));
}

#[test]
fn delete_request_bytes() {
    let f = udp_flow();
    let mut payload = vec![2, 0, 0, 0];
    payload.extend(nest(
        1,
        &v4_tuple([192, 168, 77, 2], [192, 168, 77, 1], 17, 40000, 5300),
    ));
    payload.extend(nla(18, &[0, 7]));
    payload.extend(nla(12, &[0xde, 0xad, 0xbe, 0xef]));
    // type = CTNETLINK << 8 | CT_DELETE; flags = REQUEST | ACK.
    assert_eq!(delete_request(&f, 3), nlmsg(0x0102, 0x0005, 3, &payload));
}

#[test]
fn delete_request_decodes_back() {
    let mut f = udp_flow();
    f.orig.src = "fd00::2".parse().unwrap();
    f.orig.dst = "fd00::1".parse().unwrap();
    f.zone = None;
    let req = delete_request(&f, 1);
    let msgs = messages(&req).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].payload[0], libc::AF_INET6 as u8);
    assert_eq!(parse_flow(msgs[0].payload).unwrap(), f);
}

#[test]
fn parses_a_dumped_entry_among_other_attributes() {
    let mut payload = vec![2, 0, 0, 0];
    payload.extend(nest(
        1,
        &v4_tuple([10, 0, 0, 2], [10, 0, 0, 1], 17, 1234, 53),
    ));
    // CTA_TUPLE_REPLY, CTA_STATUS, CTA_TIMEOUT, CTA_MARK, CTA_USE, CTA_ID.
    payload.extend(nest(
        2,
        &v4_tuple([10, 0, 0, 1], [10, 0, 0, 2], 17, 53, 1234),
    ));
    payload.extend(nla(3, &8u32.to_be_bytes()));
    payload.extend(nla(7, &29u32.to_be_bytes()));
    payload.extend(nla(8, &0u32.to_be_bytes()));
    payload.extend(nla(11, &1u32.to_be_bytes()));
    payload.extend(nla(12, &42u32.to_be_bytes()));
    let mut buf = nlmsg(0x0100, 0x2, 5, &payload);
    // An ICMP entry (no ports) in the same datagram, then the end of the dump.
    let mut icmp = vec![2, 0, 0, 0];
    icmp.extend(nest(
        1,
        &[
            nest(1, &[nla(1, &[10, 0, 0, 2]), nla(2, &[10, 0, 0, 1])]),
            nest(2, &[nla(1, &[1]), nla(4, &7u16.to_be_bytes())]),
        ],
    ));
    buf.extend(nlmsg(0x0100, 0x2, 5, &icmp));
    buf.extend(nlmsg(NLMSG_DONE, 0x2, 5, &0i32.to_ne_bytes()));

    let msgs = messages(&buf).unwrap();
    assert_eq!(msgs.len(), 3);
    assert!(msgs[0].is_entry() && msgs[1].is_entry() && !msgs[2].is_entry());
    assert_eq!(msgs[2].ty, NLMSG_DONE);
    assert_eq!(msgs[2].errno().unwrap(), 0);
    let f = parse_flow(msgs[0].payload).unwrap();
    assert_eq!(f.orig.src, "10.0.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(f.orig.dst, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!((f.orig.proto, f.orig.ports), (17, Some((1234, 53))));
    assert_eq!((f.zone, f.id), (None, Some(42)));
    let i = parse_flow(msgs[1].payload).unwrap();
    assert_eq!((i.orig.proto, i.orig.ports, i.id), (1, None, None));
}

#[test]
fn error_messages_and_malformed_input() {
    let ack = nlmsg(NLMSG_ERROR, 0, 1, &[0; 20]);
    assert_eq!(messages(&ack).unwrap()[0].errno().unwrap(), 0);
    let enoent = nlmsg(NLMSG_ERROR, 0, 1, &(-libc::ENOENT).to_ne_bytes());
    assert_eq!(messages(&enoent).unwrap()[0].errno().unwrap(), libc::ENOENT);
    assert!(
        messages(&nlmsg(NLMSG_ERROR, 0, 1, &[])).unwrap()[0]
            .errno()
            .is_err()
    );

    // A header claiming more than was received.
    let mut cut = nlmsg(0x0100, 0, 1, &[2, 0, 0, 0]);
    cut[0] = 200;
    assert!(messages(&cut).is_err());
    // An attribute running past its message.
    let mut bad = vec![2, 0, 0, 0];
    bad.extend(nla(1, &[0; 8]));
    bad[4] = 60;
    assert!(parse_flow(&bad).is_err());
    // No original tuple, or one without addresses.
    assert!(parse_flow(&[2, 0, 0, 0]).is_err());
    let mut noip = vec![2, 0, 0, 0];
    noip.extend(nest(1, &[nest(2, &[nla(1, &[17])])]));
    assert!(parse_flow(&noip).is_err());
}
