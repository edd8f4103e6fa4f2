//! Message → typed request: which shard decides it and with what command, or the DE39 the
//! connection answers by itself. And outcome → the fields of the response.
//!
//! The dialect (what each field means to us) is documented in `proto/dialect.md`: for an 0100
//! only DE2 (or DE35), DE3, DE4 and DE11 are mandatory; a missing or unusable mandatory field
//! is answered 30; an unknown card 14; an unsupported processing code 12.

use crate::domain::controls::card_presence;
use crate::domain::country::alpha2_from_numeric;
use crate::domain::{CardId, Currency};
use crate::iso8583::{CurrencyCode, Message, Pan, FIELD_LEN_MAX};
use crate::ledger::command::{AuthKind, AuthRequest, MerchantData, ReversalRequest, TxnKey};
use crate::ledger::runtime::Ledger;
use crate::ledger::shard::Work;
use crate::ledger::{Command, Outcome, CURRENCY_ABSENT, CURRENCY_UNREADABLE};

/// What to do with one decoded request (inline work: see `Work`).
#[allow(clippy::large_enum_variant)]
pub enum Dispatch {
    /// Answer at once with this DE39.
    Local([u8; 2]),
    /// Send this work to that shard.
    Shard(u16, Work),
    /// A message type we never answer (a response sent to us, an unknown class): count it
    /// and drop it.
    Ignore,
}

const FORMAT_ERROR: Dispatch = Dispatch::Local(*b"30");

pub fn dispatch(msg: &Message, ledger: &Ledger) -> Dispatch {
    match msg.mti().value() {
        800 => network_management(msg),
        100 | 101 => authorization(msg, ledger, Flow::Authorize).unwrap_or(FORMAT_ERROR),
        200 | 201 => authorization(msg, ledger, Flow::Financial).unwrap_or(FORMAT_ERROR),
        120 | 121 => advice(msg, ledger).unwrap_or(FORMAT_ERROR),
        400 | 401 | 420 | 421 => reversal(msg, ledger).unwrap_or(FORMAT_ERROR),
        _ if msg.mti().response().is_some() => Dispatch::Local(*b"12"),
        _ => Dispatch::Ignore,
    }
}

/// 0800: sign-on (001), sign-off (002) and echo (301) are answered 00; any other code 12.
pub(crate) fn network_management(msg: &Message) -> Dispatch {
    match msg.network_management_code() {
        Some(1 | 2 | 301) => Dispatch::Local(*b"00"),
        Some(_) => Dispatch::Local(*b"12"),
        None => FORMAT_ERROR,
    }
}

/// A card found from DE2 or DE35, or the DE39 that says why not.
fn card(msg: &Message, ledger: &Ledger) -> Result<CardId, [u8; 2]> {
    let pan: Pan = msg.pan().ok_or(*b"30")?;
    ledger.route(pan.as_digits()).ok_or_else(|| {
        crate::metrics::decline("unknown_card");
        *b"14"
    })
}

/// The network's identity of this message: DE32, DE11, DE7.
fn own_key(msg: &Message) -> Option<TxnKey> {
    let stan = msg.stan()?;
    let acquirer = msg.acquirer_id();
    let acquirer = acquirer.as_ref().map(|a| a.as_bytes()).unwrap_or_default();
    // DE7's digits as they came (ten_digits(as_number) of the parsed time gives the same).
    let time = msg.transmission_time_digits().unwrap_or([b'0'; 10]);
    Some(TxnKey::derive(acquirer, stan, &time))
}

/// The identity of the original transaction named in DE90.
fn original_key(msg: &Message) -> Option<TxnKey> {
    let original = msg.original_data()?;
    let acquirer = original.acquirer_id.to_string();
    let time = ten_digits(original.transmission_time.as_number());
    Some(TxnKey::derive(acquirer.as_bytes(), original.stan, &time))
}

fn ten_digits(value: u64) -> [u8; 10] {
    digits::<10>(value)
}

/// Which command an authorization-shaped request becomes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// 0100: authorize (hold).
    Authorize,
    /// 0200: authorize and capture at once; purchases and cash withdrawals only.
    Financial,
}

fn authorization(msg: &Message, ledger: &Ledger, flow: Flow) -> Option<Dispatch> {
    let card = match card(msg, ledger) {
        Ok(card) => card,
        Err(de39) => return Some(Dispatch::Local(de39)),
    };
    let code = msg.processing_code()?;
    let amount_minor = msg.amount_transaction()?;
    let key = own_key(msg)?;
    let kind = match (code.transaction_type, amount_minor, flow) {
        (0, 0, Flow::Authorize) => AuthKind::AccountVerification,
        (0, _, _) => AuthKind::Purchase,
        (1, _, _) => AuthKind::CashWithdrawal,
        (20, _, Flow::Authorize) => AuthKind::Refund,
        (30 | 31, _, Flow::Authorize) => AuthKind::BalanceInquiry,
        _ => return Some(Dispatch::Local(*b"12")),
    };
    let request = auth_request(msg, card, key, kind, amount_minor);
    let command = match flow {
        Flow::Authorize => Command::Authorize(request),
        Flow::Financial => Command::Financial(request),
    };
    Some(Dispatch::Shard(card.shard(), Work::Command(command)))
}

/// 0120/0121: the network stood in for us. An advice of a decline moves no money and is only
/// acknowledged; an advice of an approval is recorded (even beyond the balance) under the key
/// of the original (DE90) when it names one, else its own.
fn advice(msg: &Message, ledger: &Ledger) -> Option<Dispatch> {
    let approved = msg
        .response_code()
        .is_none_or(|c| matches!(&c, b"00" | b"10" | b"08"));
    if !approved {
        return Some(Dispatch::Local(*b"00"));
    }
    let card = match card(msg, ledger) {
        Ok(card) => card,
        Err(de39) => return Some(Dispatch::Local(de39)),
    };
    let code = msg.processing_code()?;
    let amount_minor = msg.amount_transaction()?;
    let key = original_key(msg).or_else(|| own_key(msg))?;
    let kind = match code.transaction_type {
        0 => AuthKind::Purchase,
        1 => AuthKind::CashWithdrawal,
        _ => return Some(Dispatch::Local(*b"12")),
    };
    let mut request = auth_request(msg, card, key, kind, amount_minor);
    request.original = None;
    Some(Dispatch::Shard(
        card.shard(),
        Work::Command(Command::Advice(request)),
    ))
}

/// 0400/0401/0420/0421: full reversal, or partial when DE95 gives a non-zero replacement
/// amount. The original is named by DE90, or is the message with the reversal's own key.
fn reversal(msg: &Message, ledger: &Ledger) -> Option<Dispatch> {
    let card = match card(msg, ledger) {
        Ok(card) => card,
        Err(de39) => return Some(Dispatch::Local(de39)),
    };
    let key = own_key(msg)?;
    let original = original_key(msg).unwrap_or(key);
    let replacement_amount_minor = msg
        .replacement_amounts()
        .map(|r| r.transaction_amount_minor)
        .filter(|amount| *amount > 0);
    let request = ReversalRequest {
        card,
        key,
        original,
        replacement_amount_minor,
    };
    Some(Dispatch::Shard(
        card.shard(),
        Work::Command(Command::Reverse(request)),
    ))
}

fn auth_request(
    msg: &Message,
    card: CardId,
    key: TxnKey,
    kind: AuthKind,
    amount_minor: i64,
) -> AuthRequest {
    let acceptor = msg.card_acceptor();
    let merchant_country = acceptor
        .and_then(|a| a.country)
        .or_else(|| msg.acquiring_country().and_then(alpha2_from_numeric));
    let entry_mode = msg.pos_entry_mode().map(|m| digits::<3>(u64::from(m)));
    let condition = msg.pos_condition_code().map(|c| digits::<2>(u64::from(c)));
    let presence = card_presence(
        entry_mode.as_ref().map(|m| &m[..]),
        condition.as_ref().map(|c| &c[..]),
    );
    let terminal = msg.terminal_id();
    let merchant_id = msg.merchant_id();
    let merchant = MerchantData::new(
        acceptor
            .as_ref()
            .map(|a| a.name.as_bytes())
            .unwrap_or_default(),
        acceptor
            .as_ref()
            .map(|a| a.city.as_bytes())
            .unwrap_or_default(),
        acceptor
            .as_ref()
            .and_then(|a| a.country.as_ref())
            .map(|c| c.as_slice())
            .unwrap_or_default(),
        terminal.as_ref().map(|t| t.as_bytes()).unwrap_or_default(),
        merchant_id
            .as_ref()
            .map(|m| m.as_bytes())
            .unwrap_or_default(),
    );
    let mut rrn = [b' '; 12];
    if let Some(text) = msg.rrn() {
        let bytes = text.as_bytes();
        rrn[..bytes.len().min(12)].copy_from_slice(&bytes[..bytes.len().min(12)]);
    }
    AuthRequest {
        card,
        key,
        content_hash: content_hash(msg, card),
        kind,
        amount_minor,
        // No DE49: the ledger reads it as the account currency (CURRENCY_ABSENT).
        currency: msg
            .currency_transaction()
            .map_or(CURRENCY_ABSENT, currency_numeric),
        billing_amount_minor: msg.amount_cardholder_billing(),
        billing_currency: msg.currency_cardholder_billing().map(currency_numeric),
        mcc: msg.mcc().unwrap_or(0),
        merchant_country,
        presence,
        partial_ok: partial_supported(msg),
        expiry_presented: msg.expiry().map(|e| (e.year, e.month)),
        original: original_key(msg),
        merchant,
        stan: msg.stan().unwrap_or(0),
        rrn,
    }
}

/// A present DE49 or DE51 as the ledger takes it: digits as they are, an alphabetic code
/// (DE49 is `an 3`) mapped to its numeric code through the currency table. Anything else (an
/// alphabetic code not in the table, a mix of characters, `000`, which would read as
/// `CURRENCY_ABSENT`) is `CURRENCY_UNREADABLE`, which the ledger declines 13 like an unknown
/// numeric code, unless DE6/DE51 carry the amount in the account's currency. Never absent:
/// that would charge the amount in the account's currency whatever the merchant's was.
fn currency_numeric(code: CurrencyCode) -> u16 {
    match code {
        CurrencyCode::Numeric(numeric) if numeric != CURRENCY_ABSENT => numeric,
        CurrencyCode::Alpha(alpha) => std::str::from_utf8(&alpha)
            .ok()
            .and_then(Currency::from_alpha)
            .map_or(CURRENCY_UNREADABLE, Currency::numeric),
        _ => CURRENCY_UNREADABLE,
    }
}

/// Partial approval is supported when DE60 (advice/reason code, private use) has at least 10
/// characters and its 10th is `1` or `3`, modelled on the terminal capability indicator at
/// position 10 of the networks' DE60 (see `proto/dialect.md`).
fn partial_supported(msg: &Message) -> bool {
    if !msg.has(60) {
        return false;
    }
    let mut scratch = [0u8; FIELD_LEN_MAX];
    matches!(msg.value(60, &mut scratch), Some(v) if v.len() >= 10 && matches!(v[9], b'1' | b'3'))
}

/// `value` as exactly `N` zero-padded ASCII digits (the low `N` digits).
fn digits<const N: usize>(mut value: u64) -> [u8; N] {
    let mut out = [b'0'; N];
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out
}

/// FNV-1a over the fields that make a request what it is (never the PAN: the card id stands
/// for it). Same transaction key with a different hash is a duplicate with different content.
fn content_hash(msg: &Message, card: CardId) -> u64 {
    const FIELDS: [u8; 8] = [3, 4, 6, 18, 41, 42, 49, 51];
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(&card.0.to_le_bytes());
    for field in FIELDS {
        feed(&[field]);
        feed(msg.raw(field).unwrap_or_default());
    }
    hash
}

/// The response fields an outcome asks for.
pub struct WireAnswer {
    pub de39: [u8; 2],
    pub approval_code: Option<[u8; 6]>,
    /// Replaces the echoed DE4 (the approved part of a partial approval).
    pub amount_minor: Option<u64>,
    /// One DE54 entry.
    pub de54: Option<[u8; 20]>,
}

impl WireAnswer {
    pub fn code(de39: [u8; 2]) -> WireAnswer {
        WireAnswer {
            de39,
            approval_code: None,
            amount_minor: None,
            de54: None,
        }
    }

    pub fn from_outcome(outcome: &Outcome, request: &Message) -> WireAnswer {
        match outcome {
            Outcome::Authorization(auth) => {
                if let Some(reason) = auth.reason {
                    crate::metrics::decline(reason.as_str());
                }
                let de39 = auth.code.as_bytes();
                let mut answer = WireAnswer::code(de39);
                answer.approval_code = auth.approval_code();
                let currency = auth.currency.map_or(0, |c| c.numeric());
                if &de39 == b"10" {
                    answer.amount_minor = u64::try_from(auth.approved_merchant_amount_minor).ok();
                    let requested = request.amount_transaction().unwrap_or(0);
                    // DE54's currency is three digits: the account's when DE49 named none.
                    let requested_currency = request
                        .currency_transaction()
                        .map(currency_numeric)
                        .filter(|c| *c != CURRENCY_UNREADABLE)
                        .unwrap_or(currency);
                    answer.de54 = Some(additional_amount(b"57", requested_currency, requested));
                }
                let inquiry = request
                    .processing_code()
                    .is_some_and(|p| p.transaction_type / 10 == 3);
                if inquiry && auth.code.is_approval() {
                    answer.de54 = Some(additional_amount(b"02", currency, auth.available_minor));
                }
                answer
            }
            Outcome::Reversed { .. } => WireAnswer::code(*b"00"),
            Outcome::Rejected(_) => WireAnswer::code(*b"30"),
            _ => WireAnswer::code(*b"96"),
        }
    }
}

/// One DE54 entry: account type 00, amount type, currency, C/D sign, 12 digits.
fn additional_amount(amount_type: &[u8; 2], currency: u16, amount_minor: i64) -> [u8; 20] {
    let mut out = [b'0'; 20];
    out[2..4].copy_from_slice(amount_type);
    let mut c = currency;
    for slot in out[4..7].iter_mut().rev() {
        *slot = b'0' + (c % 10) as u8;
        c /= 10;
    }
    out[7] = if amount_minor < 0 { b'D' } else { b'C' };
    let mut a = amount_minor.unsigned_abs().min(999_999_999_999);
    for slot in out[8..20].iter_mut().rev() {
        *slot = b'0' + (a % 10) as u8;
        a /= 10;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request `dispatch` takes but `Mti::response` cannot answer would be decided by the
    /// ledger and then go unanswered (0201 once did).
    #[test]
    fn every_request_dispatch_takes_has_a_response_mti() {
        for value in [100, 101, 120, 121, 200, 201, 400, 401, 420, 421, 800] {
            let mti = crate::iso8583::Mti::new(value);
            assert!(mti.response().is_some(), "{mti}");
        }
    }

    #[test]
    fn additional_amount_layout() {
        assert_eq!(
            &additional_amount(b"02", 840, 123_456),
            b"0002840C000000123456"
        );
        assert_eq!(&additional_amount(b"57", 978, -5), b"0057978D000000000005");
    }

    #[test]
    fn ten_digit_padding() {
        assert_eq!(&ten_digits(1_121_235_959), b"1121235959");
        assert_eq!(&ten_digits(101_000_000), b"0101000000");
    }
}
