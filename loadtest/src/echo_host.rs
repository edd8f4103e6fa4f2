//! `loadtest echo-host`: answers every request with its response MTI, DE11 copied and
//! DE39=00, nothing else. It measures what loopback and framing cost, with no switch behind.
//!
//! One task per connection; each wakeup reads everything available, answers every complete
//! frame into one buffer and writes it with one write.

use std::sync::Arc;

use authswitch::iso8583::{
    peek_mti_stan, EncodeError, FrameCodec, FrameError, MessageBuilder, WireFormat,
    FRAME_LEN_MAX_DEFAULT,
};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::Decoder;

/// Connections served at once; more wait in the accept backlog.
pub const ECHO_CONNECTIONS_MAX: usize = 1024;
const BUF_LEN: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    #[error("encoding a response: {0}")]
    Encode(#[from] EncodeError),
    #[error("a request without a readable MTI and DE11")]
    Unreadable,
}

/// Accepts connections forever; each is served by its own task.
pub async fn serve(listener: TcpListener, format: WireFormat) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(ECHO_CONNECTIONS_MAX));
    loop {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (socket, peer) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = echo_connection(socket, format).await {
                eprintln!("echo-host: {peer}: {e}");
            }
            drop(permit);
        });
    }
}

async fn echo_connection(mut socket: TcpStream, format: WireFormat) -> Result<(), EchoError> {
    socket.set_nodelay(true).map_err(FrameError::Io)?;
    let mut codec = FrameCodec::new(&format, FRAME_LEN_MAX_DEFAULT);
    let mut input = BytesMut::with_capacity(BUF_LEN);
    let mut output = BytesMut::with_capacity(BUF_LEN);
    loop {
        if input.capacity() - input.len() < BUF_LEN / 4 {
            input.reserve(BUF_LEN);
        }
        if socket.read_buf(&mut input).await.map_err(FrameError::Io)? == 0 {
            return Ok(());
        }
        answer_all(&mut codec, &format, &mut input, &mut output)?;
        if !output.is_empty() {
            socket.write_all(&output).await.map_err(FrameError::Io)?;
            output.clear();
        }
    }
}

/// Appends a response for every complete frame in `input` to `output`.
pub fn answer_all(
    codec: &mut FrameCodec,
    format: &WireFormat,
    input: &mut BytesMut,
    output: &mut BytesMut,
) -> Result<(), EchoError> {
    while let Some(frame) = codec.decode(input)? {
        if frame.body.is_empty() {
            continue;
        }
        let (mti, stan) = peek_mti_stan(&frame.body, format).ok_or(EchoError::Unreadable)?;
        // Responses and other messages that take no answer get none.
        let Some(response) = mti.response() else {
            continue;
        };
        codec.write_frame(frame.tpdu, output, |out| {
            MessageBuilder::new(response)
                .set_number(11, stan.into())
                .set_text(39, b"00")
                .encode(format, out)
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use authswitch::iso8583::{BitmapEncoding, Charset, LengthHeader, Message, Mti};

    #[test]
    fn answers_each_request_with_stan_and_00() {
        let format = WireFormat {
            header: LengthHeader::Ascii4,
            tpdu: true,
            bitmap: BitmapEncoding::Hex,
            charset: Charset::Bcd,
        };
        let mut codec = FrameCodec::new(&format, FRAME_LEN_MAX_DEFAULT);
        let mut input = BytesMut::new();
        for (mti, stan) in [(100, 7u64), (800, 999_999), (400, 1)] {
            let tpdu = Some(crate::template::TPDU);
            codec
                .write_frame(tpdu, &mut input, |out| {
                    MessageBuilder::new(Mti::new(mti))
                        .set_number(11, stan)
                        .set_number(7, 1122334455)
                        .encode(&format, out)
                })
                .unwrap();
        }
        input.extend_from_slice(b"00"); // half a header: waits for more
        let mut output = BytesMut::new();
        answer_all(&mut codec, &format, &mut input, &mut output).unwrap();
        assert_eq!(&input[..], b"00");
        let mut answers = Vec::new();
        while let Some(frame) = codec.decode(&mut output).unwrap() {
            // Our TPDU was swapped on the way in (write_frame) and swapped back on the way out.
            assert_eq!(frame.tpdu, Some(crate::template::TPDU));
            let msg = Message::decode(frame.body, &format).unwrap();
            assert_eq!(msg.response_code(), Some(*b"00"));
            assert_eq!(msg.fields().collect::<Vec<_>>(), [11, 39]);
            answers.push((msg.mti().value(), msg.stan().unwrap()));
        }
        assert_eq!(answers, [(110, 7), (810, 999_999), (410, 1)]);
    }

    #[test]
    fn unreadable_request_is_an_error() {
        let format = WireFormat::default();
        let mut codec = FrameCodec::new(&format, FRAME_LEN_MAX_DEFAULT);
        let mut input = BytesMut::from(&[0u8, 3, b'0', b'1', b'0'][..]);
        let mut output = BytesMut::new();
        let err = answer_all(&mut codec, &format, &mut input, &mut output).unwrap_err();
        assert!(matches!(err, EchoError::Unreadable));
        assert!(output.is_empty());
    }
}
