//! The `tracing` span of an acquisition, in a test binary of its own: it
//! installs the global subscriber (the blocking acquisition runs on
//! shylock's runtime thread, and a thread-local subscriber of a test thread
//! races with the interest other tests' threads cache for the same
//! callsites).

use std::sync::{Arc, Mutex};

use shylock_core::{Backend, Lock, MemoryBackend};

/// Span fields recorded, by span id.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(String, String)>>>);

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl tracing::Subscriber for Spans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        if let Ok(mut fields) = self.0.lock() {
            fields.push(("span".into(), attrs.metadata().name().into()));
            attrs.record(&mut Fields(&mut fields));
        }
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        if let Ok(mut fields) = self.0.lock() {
            values.record(&mut Fields(&mut fields));
        }
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn an_acquisition_has_a_span_with_the_name_and_the_token() {
    let spans = Spans::default();
    tracing::subscriber::set_global_default(spans.clone()).expect("the only subscriber");
    let backend = Backend::from(MemoryBackend::new());
    let guard = Lock::with_backend("spanned", &backend)
        .acquire()
        .expect("acquire");
    assert!(!guard.span().is_disabled());
    let token = guard.token().get();
    let fields = spans.0.lock().expect("fields").clone();
    assert!(
        fields.contains(&("span".into(), "lock".into())),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("lock".into(), "spanned".into())),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("token".into(), token.to_string())),
        "{fields:?}"
    );
}
