// Demo shop behaviour, external so the pages run under `script-src 'self'` (no inline script).
// 1. The microadjust stub (docs/TRACKER.md "Install"): calls made before the async tracker has
//    loaded are queued and replayed by it.
window.microadjust=window.microadjust||(function(q){function f(n){return function(){var e=[n,arguments];q.push(e);return function(){e.off=1;e.u&&e.u()}}}return{q:q,track:f("track"),subscribe:f("subscribe"),flush:f("flush"),consent:{grant:f("consent.grant"),revoke:f("consent.revoke")}}})([]);

// 2. "Add to cart": a goal event for the rules (cart state, the cart-idle offer) and a counter.
document.addEventListener("click", function (e) {
  var button = e.target && e.target.closest ? e.target.closest("button[data-add]") : null;
  if (!button) return;
  var item = button.getAttribute("data-add");
  window.microadjust.track("add_to_cart", { item: item });
  var count = document.getElementById("cart-count");
  if (count) count.textContent = String(Number(count.textContent || "0") + 1);
  button.textContent = "Added ✓";
});
