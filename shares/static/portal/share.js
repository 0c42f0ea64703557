/*
 * A shared link's landing page (/share/#pacsshare_...): the secret is in the
 * fragment, which browsers never send to a server, a log or a Referer. This
 * posts it once (with the page's CSRF token) to exchange it for a visit, and
 * takes it out of the address bar and history first.
 */
(function () {
  'use strict';
  var secret = window.location.hash.slice(1);
  window.history.replaceState(null, '', window.location.pathname);
  var form = document.getElementById('open-share');
  if (!form || !/^pacsshare_[0-9A-Za-z]{43}$/.test(secret)) {
    document.getElementById('share-missing').hidden = false;
    return;
  }
  form.elements.secret.value = secret;
  form.submit();
})();
