//! One test per transition of [`Negotiation`]: the shell is played by hand, reporting each
//! action's success as a real shell would.

use super::*;

type Sdp = &'static str;

fn candidate(n: u32) -> IceCandidate {
    IceCandidate {
        candidate: format!(
            "candidate:{n} 1 udp 2130706431 192.0.2.1 {} typ host",
            50_000 + n
        ),
        sdp_mid: Some("0".to_owned()),
        sdp_mline_index: Some(0),
        username_fragment: None,
    }
}

/// Everything queued now, without reporting anything.
fn drain(negotiation: &mut Negotiation<Sdp>) -> Vec<Action<Sdp>> {
    let mut actions = Vec::new();
    while let Some(action) = negotiation.poll_action() {
        let offer = action == Action::Offer;
        actions.push(action);
        if offer {
            // An offer is repeated until it is reported; stop at the first.
            break;
        }
    }
    actions
}

/// Asks `negotiation` for an offer and reports it made: an offer is in flight.
fn make_offer(negotiation: &mut Negotiation<Sdp>) {
    negotiation.handle_renegotiation_needed();
    assert_eq!(negotiation.poll_action(), Some(Action::Offer));
    negotiation.handle_offer_made();
}

/// Hands `negotiation` a remote offer and reports it answered.
fn answer_offer(negotiation: &mut Negotiation<Sdp>, offer: Sdp) {
    assert!(negotiation.handle_remote_offer(offer));
    assert_eq!(negotiation.poll_action(), Some(Action::Answer(offer)));
    negotiation.handle_answer_sent();
}

/// The client after its first offer was made and answered.
fn negotiated_client() -> Negotiation<Sdp> {
    let mut client = Negotiation::new(Side::Impolite);
    make_offer(&mut client);
    client.handle_remote_answer("answer").unwrap();
    assert_eq!(client.poll_action(), Some(Action::ApplyAnswer("answer")));
    client.handle_answer_applied();
    assert_eq!(client.poll_action(), None);
    client
}

/// The SFU after it answered the client's first offer.
fn negotiated_sfu() -> Negotiation<Sdp> {
    let mut sfu = Negotiation::new(Side::Polite);
    answer_offer(&mut sfu, "offer");
    assert_eq!(sfu.poll_action(), None);
    sfu
}

#[test]
fn the_impolite_side_makes_the_first_offer() {
    let mut client = Negotiation::<Sdp>::new(Side::Impolite);
    assert_eq!(client.poll_action(), None, "nothing to offer yet");
    client.handle_renegotiation_needed();
    assert_eq!(client.poll_action(), Some(Action::Offer));
    client.handle_offer_made();
    assert!(client.offer_pending());
    assert!(!client.negotiated());
    assert_eq!(client.poll_action(), None, "one offer in flight");
}

#[test]
fn the_polite_side_offers_only_after_the_first_exchange() {
    let mut sfu = Negotiation::<Sdp>::new(Side::Polite);
    sfu.handle_renegotiation_needed();
    assert_eq!(sfu.poll_action(), None, "the client offers first");
    assert!(sfu.handle_remote_offer("offer"));
    assert_eq!(sfu.poll_action(), Some(Action::Answer("offer")));
    assert!(!sfu.negotiated(), "not before the answer is reported");
    sfu.handle_answer_sent();
    assert!(sfu.negotiated());
    assert_eq!(sfu.poll_action(), Some(Action::Offer));
}

#[test]
fn an_answer_ends_the_offer_in_flight() {
    let client = negotiated_client();
    assert!(client.negotiated());
    assert!(!client.offer_pending());
}

#[test]
fn renegotiation_while_an_offer_is_in_flight_waits_for_its_answer() {
    let mut sfu = negotiated_sfu();
    make_offer(&mut sfu);
    // Two more changes while the offer is in flight: one offer covers both, after the answer.
    sfu.handle_renegotiation_needed();
    sfu.handle_renegotiation_needed();
    assert_eq!(sfu.poll_action(), None);
    sfu.handle_remote_answer("answer").unwrap();
    assert_eq!(sfu.poll_action(), Some(Action::ApplyAnswer("answer")));
    sfu.handle_answer_applied();
    assert_eq!(sfu.poll_action(), Some(Action::Offer));
    sfu.handle_offer_made();
    assert_eq!(sfu.poll_action(), None);
}

#[test]
fn glare_on_the_impolite_side_ignores_the_remote_offer() {
    let mut client = negotiated_client();
    make_offer(&mut client);
    assert!(!client.handle_remote_offer("sfu offer"), "ignored");
    assert_eq!(client.poll_action(), None);
    assert!(
        client.offer_pending(),
        "its own offer still awaits the answer"
    );
}

#[test]
fn an_offer_without_glare_is_answered_by_the_impolite_side() {
    let mut client = negotiated_client();
    assert!(client.handle_remote_offer("sfu offer"));
    assert_eq!(client.poll_action(), Some(Action::Answer("sfu offer")));
    client.handle_answer_sent();
    assert_eq!(client.poll_action(), None);
}

#[test]
fn glare_on_the_polite_side_rolls_back_answers_and_offers_again() {
    let mut sfu = negotiated_sfu();
    make_offer(&mut sfu);
    assert!(sfu.handle_remote_offer("client offer"));
    assert_eq!(sfu.poll_action(), Some(Action::RollbackOffer));
    sfu.handle_rolled_back();
    assert!(!sfu.offer_pending());
    assert_eq!(sfu.poll_action(), Some(Action::Answer("client offer")));
    sfu.handle_answer_sent();
    assert_eq!(
        sfu.poll_action(),
        Some(Action::Offer),
        "the rolled-back offer is made again"
    );
}

#[test]
fn an_answer_with_no_offer_pending_is_stale() {
    let mut sfu = negotiated_sfu();
    assert_eq!(sfu.handle_remote_answer("answer"), Err(StaleAnswer));
    assert_eq!(sfu.poll_action(), None);

    // The answer to an offer that was rolled back in glare is stale too.
    make_offer(&mut sfu);
    assert!(sfu.handle_remote_offer("client offer"));
    assert_eq!(sfu.poll_action(), Some(Action::RollbackOffer));
    sfu.handle_rolled_back();
    assert_eq!(sfu.handle_remote_answer("late answer"), Err(StaleAnswer));
    assert_eq!(sfu.poll_action(), Some(Action::Answer("client offer")));
}

#[test]
fn early_candidates_wait_for_the_first_remote_description() {
    let mut sfu = Negotiation::<Sdp>::new(Side::Polite);
    sfu.handle_remote_candidate(candidate(1));
    sfu.handle_remote_candidate(candidate(2));
    assert_eq!(sfu.poll_action(), None, "held");
    answer_offer(&mut sfu, "offer");
    assert_eq!(
        drain(&mut sfu),
        [
            Action::AddCandidate(candidate(1)),
            Action::AddCandidate(candidate(2))
        ]
    );
    sfu.handle_remote_candidate(candidate(3));
    assert_eq!(
        sfu.poll_action(),
        Some(Action::AddCandidate(candidate(3))),
        "later ones go straight through"
    );
}

#[test]
fn early_candidates_are_handed_over_after_the_first_answer_on_the_offering_side() {
    let mut client = Negotiation::<Sdp>::new(Side::Impolite);
    make_offer(&mut client);
    client.handle_remote_candidate(candidate(1));
    assert_eq!(client.poll_action(), None);
    client.handle_remote_answer("answer").unwrap();
    assert_eq!(client.poll_action(), Some(Action::ApplyAnswer("answer")));
    client.handle_answer_applied();
    assert_eq!(
        client.poll_action(),
        Some(Action::AddCandidate(candidate(1)))
    );
    assert_eq!(client.poll_action(), None);
}

#[test]
fn early_candidates_beyond_the_limit_are_dropped() {
    let mut sfu = Negotiation::<Sdp>::new(Side::Polite);
    for n in 0..EARLY_CANDIDATES as u32 + 10 {
        sfu.handle_remote_candidate(candidate(n));
    }
    answer_offer(&mut sfu, "offer");
    let flushed = drain(&mut sfu);
    assert_eq!(flushed.len(), EARLY_CANDIDATES);
    assert_eq!(
        flushed.last(),
        Some(&Action::AddCandidate(candidate(
            EARLY_CANDIDATES as u32 - 1
        )))
    );
}

#[test]
fn candidates_queued_before_an_answer_come_before_the_next_offer() {
    let mut sfu = Negotiation::<Sdp>::new(Side::Polite);
    sfu.handle_remote_candidate(candidate(1));
    sfu.handle_renegotiation_needed();
    answer_offer(&mut sfu, "offer");
    assert_eq!(
        drain(&mut sfu),
        [Action::AddCandidate(candidate(1)), Action::Offer]
    );
}

#[test]
fn a_failed_step_drops_the_rest_and_keeps_the_state() {
    let mut sfu = negotiated_sfu();
    make_offer(&mut sfu);
    assert!(sfu.handle_remote_offer("client offer"));
    // The rollback fails: the answer is not attempted and our offer is still pending.
    assert_eq!(sfu.poll_action(), Some(Action::RollbackOffer));
    sfu.abandon();
    assert_eq!(sfu.poll_action(), None);
    assert!(sfu.offer_pending());

    // A failed answer after a rollback: the offer is still due, made after the next input.
    let mut sfu = negotiated_sfu();
    make_offer(&mut sfu);
    assert!(sfu.handle_remote_offer("bad offer"));
    assert_eq!(sfu.poll_action(), Some(Action::RollbackOffer));
    sfu.handle_rolled_back();
    assert_eq!(sfu.poll_action(), Some(Action::Answer("bad offer")));
    sfu.abandon();
    assert!(!sfu.offer_pending());
    assert_eq!(sfu.poll_action(), Some(Action::Offer));
}

#[test]
fn a_failed_first_answer_leaves_the_session_unnegotiated() {
    let mut sfu = Negotiation::<Sdp>::new(Side::Polite);
    sfu.handle_remote_candidate(candidate(1));
    assert!(sfu.handle_remote_offer("bad offer"));
    assert_eq!(sfu.poll_action(), Some(Action::Answer("bad offer")));
    sfu.abandon();
    assert!(!sfu.negotiated());
    sfu.handle_remote_candidate(candidate(2));
    assert_eq!(sfu.poll_action(), None, "candidates are still held");
    answer_offer(&mut sfu, "offer");
    assert_eq!(
        drain(&mut sfu),
        [
            Action::AddCandidate(candidate(1)),
            Action::AddCandidate(candidate(2))
        ]
    );
}
