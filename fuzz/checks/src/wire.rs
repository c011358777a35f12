//! Byte formats: frames, sealed bodies, envelopes, the client↔gateway link.

use protocol::frame::{FRAME_HEADER_SIZE, ForwardFrame, Frame, SealedContent};
use protocol::link::{
    ClientMessage, GatewayMessage, LENGTH_PREFIX_SIZE, LinkDecoder, LinkMessage, MAX_BODY_LEN,
};
use protocol::packet::FRAME_SIZE;
use protocol::seal::{SEALED_PLAINTEXT_SIZE, SEALED_SIZE};

use crate::fixtures;
use crate::input::Input;

/// The body length a frame or a sealed content announces, if its header is there.
fn announced(bytes: &[u8], at: usize) -> Option<usize> {
    let hi = bytes.get(at)?;
    let lo = bytes.get(at + 1)?;
    Some(usize::from(u16::from_be_bytes([*hi, *lo])))
}

/// Whether `bytes` past `used` are all zero (the padding an encoder writes).
fn zero_padded(bytes: &[u8], used: usize) -> bool {
    bytes.get(used..).is_some_and(|p| p.iter().all(|b| *b == 0))
}

/// `Frame::decode`: a frame that decodes encodes to one of the one size,
/// decodes to itself again, and is the input byte for byte but for padding
/// (which the decoder ignores and the encoder writes as zeros).
pub fn frame(data: &[u8]) {
    let Ok(frame) = Frame::decode(data) else {
        return;
    };
    assert_eq!(data.len(), FRAME_SIZE);
    let bytes = frame.encode().expect("a decoded frame encodes");
    assert_eq!(bytes.len(), FRAME_SIZE, "one frame size");
    assert_eq!(Frame::decode(&bytes).as_ref(), Ok(&frame), "round trip");
    let used = FRAME_HEADER_SIZE + announced(data, 2).expect("header");
    assert_eq!(
        bytes.get(..used),
        data.get(..used),
        "canonical up to padding"
    );
    if zero_padded(data, used) {
        assert_eq!(bytes, data, "canonical");
    }
}

/// `SealedContent::decode` (a sealed body's plaintext): canonical up to padding.
pub fn sealed_content(data: &[u8]) {
    let Ok(content) = SealedContent::decode(data) else {
        return;
    };
    assert_eq!(data.len(), SEALED_PLAINTEXT_SIZE);
    let bytes = content.encode().expect("decoded content encodes");
    assert_eq!(SealedContent::decode(&bytes).as_ref(), Ok(&content));
    let used = 8 + announced(data, 6).expect("header");
    assert_eq!(
        bytes.get(..used),
        data.get(..used),
        "canonical up to padding"
    );
    if zero_padded(data, used) {
        assert_eq!(bytes.as_slice(), data, "canonical");
    }
}

/// `ForwardFrame::open`. First byte 0: the rest is a sealed body as a
/// gateway delivers it, opened with the fixture client's key (anything but a
/// body sealed to that key is refused). Otherwise the rest is a plaintext:
/// it is sealed to the client, and opening gives exactly what decoding the
/// plaintext gives; another key, or one flipped bit, opens nothing.
pub fn sealed_body(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let client = fixtures::sphinx_key(fixtures::CLIENT_KEY);
    if mode == 0 {
        let body = input.rest();
        if let Ok(content) = ForwardFrame::open(client.secret(), body) {
            assert!(body.len() >= SEALED_SIZE, "a short body never opens");
            assert!(content.encode().is_ok());
        }
        return;
    }
    let flip = usize::from(input.u16());
    let mut plaintext = [0u8; SEALED_PLAINTEXT_SIZE];
    let rest = input.rest();
    let n = rest.len().min(SEALED_PLAINTEXT_SIZE);
    if let (Some(dst), Some(src)) = (plaintext.get_mut(..n), rest.get(..n)) {
        dst.copy_from_slice(src);
    }
    let mut rng = fixtures::rng(u64::from(mode));
    let sealed = protocol::seal::seal(&client.public(), &plaintext, &mut rng).expect("seals");
    let opened = ForwardFrame::open(client.secret(), sealed.as_slice());
    assert_eq!(
        opened.as_ref().ok(),
        SealedContent::decode(&plaintext).as_ref().ok()
    );
    let other = fixtures::sphinx_key(fixtures::CLIENT_KEY + 1);
    assert!(ForwardFrame::open(other.secret(), sealed.as_slice()).is_err());
    let mut tampered = *sealed;
    if let Some(b) = tampered.get_mut(flip % SEALED_SIZE) {
        *b ^= 1 << (mode % 8);
    }
    assert!(ForwardFrame::open(client.secret(), &tampered).is_err());
}

/// `Envelope::decode`: canonical.
pub fn envelope(data: &[u8]) {
    let mut input = Input::new(data);
    let max_surbs = usize::from(input.u8() % 8);
    let bytes = input.rest();
    let Ok(envelope) = client_core::Envelope::decode(bytes, max_surbs) else {
        return;
    };
    assert!(envelope.reply_surbs.len() <= max_surbs);
    assert_eq!(envelope.encode(), bytes, "canonical");
}

/// A link stream cut into pieces: the same messages come out whatever the
/// cuts; each re-encodes to exactly the bytes it took; the decoder never
/// holds more than one message's worth once it asks for more.
fn link_stream<M: LinkMessage + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let mut input = Input::new(data);
    let step = usize::from(input.u8()).max(1);
    let stream = input.rest();
    let whole = drain::<M>(&[stream]);
    let pieces: Vec<&[u8]> = stream.chunks(step).collect();
    let cut = drain::<M>(&pieces);
    assert_eq!(whole, cut, "cuts change nothing");
    let (messages, error) = whole;
    let mut encoded = Vec::new();
    for m in &messages {
        m.encode_into(&mut encoded);
    }
    assert_eq!(
        stream.get(..encoded.len()),
        Some(encoded.as_slice()),
        "canonical"
    );
    if error.is_none() {
        let left = stream.len() - encoded.len();
        assert!(
            left < LENGTH_PREFIX_SIZE + MAX_BODY_LEN,
            "held {left} bytes"
        );
    }
}

/// Messages decoded from `pieces` pushed one by one, and the error that stopped it.
fn drain<M: LinkMessage>(pieces: &[&[u8]]) -> (Vec<M>, Option<String>) {
    let mut decoder = LinkDecoder::<M>::new();
    let mut out = Vec::new();
    for piece in pieces {
        decoder.push(piece);
        loop {
            match decoder.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e.to_string())),
            }
        }
        assert!(decoder.buffered() < LENGTH_PREFIX_SIZE + MAX_BODY_LEN);
    }
    (out, None)
}

/// What a gateway reads from a client's stream.
pub fn link_client_messages(data: &[u8]) {
    link_stream::<ClientMessage>(data);
}

/// What a client reads from its gateway's stream.
pub fn link_gateway_messages(data: &[u8]) {
    link_stream::<GatewayMessage>(data);
}
