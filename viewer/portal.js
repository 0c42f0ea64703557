/*
 * The portal around OHIF: appended to the generated app-config.js, after
 * `window.config = {...}`, whose `pacsportal` entry holds this user's data.
 * A script file, not inline script, so the viewer's CSP stays as it is.
 *
 * It fills three hooks of OHIF's own configuration:
 *  - whiteLabeling.createLogoComponentFn: the site's name (a link to the portal
 *    home), the signed-in user and a log-out form, in the header of the study
 *    list and of every viewer route;
 *  - httpErrorHandler: a 401 from /pacs (the session ended: idle timeout,
 *    logout in another tab, account deactivated) takes the browser to the
 *    login page, which brings it back to the same viewer URL; a 403 says the
 *    study is not this user's to see;
 *  - extensions: a small extension whose preRegistration hook hands over
 *    OHIF's services, for that 403 message.
 */
(function (config) {
  'use strict';
  var portal = config.pacsportal;
  var services = null;
  var leaving = false;
  var refusals = {};

  // Where the user is now.
  function here() {
    return window.location.pathname + window.location.search + window.location.hash;
  }

  // The study whose series the study list asked for: its preview of the study
  // the user just clicked (/pacs/dicom-web/studies/<uid>/series, QIDO-RS).
  function previewedStudy(error) {
    var url = (error && error.request && error.request.responseURL) || '';
    var found = /\/studies\/([0-9.]+)\/series(?:\?|$)/.exec(url);
    return found ? found[1] : '';
  }

  // Where the login page sends the user back to: the same viewer URL, or, from
  // the study list, the study they were opening.
  function destination(error) {
    var study = previewedStudy(error);
    if (study && window.location.pathname === portal.studyListUrl) {
      return portal.viewerUrl + '?StudyInstanceUIDs=' + encodeURIComponent(study);
    }
    return here();
  }

  function logIn(error) {
    if (leaving) {
      return;
    }
    leaving = true;
    window.location.assign(portal.loginUrl + '?next=' + encodeURIComponent(destination(error)));
  }

  // Said once per page: a study's many requests are refused together.
  function refused() {
    var page = here();
    if (refusals[page] || !services) {
      return;
    }
    refusals[page] = true;
    services.uiNotificationService.show({
      title: 'You may not see this study',
      message:
        'Your account has no access to this study. Ask your PACS administrator if you need it.',
      type: 'error',
      duration: 60000,
    });
  }

  config.httpErrorHandler = function (error) {
    var status = error && error.status;
    if (status === 401) {
      logIn(error);
    } else if (status === 403) {
      refused();
    }
  };

  config.extensions = (config.extensions || []).concat([
    {
      id: 'pacsportal',
      preRegistration: function (hooks) {
        services = hooks.servicesManager.services;
      },
    },
  ]);

  var text = {
    color: '#d5dbe5',
    fontSize: '12px',
    lineHeight: '16px',
    whiteSpace: 'nowrap',
    overflow: 'hidden',
    textOverflow: 'ellipsis',
  };

  function Brand(React) {
    var h = React.createElement;
    // The viewer header's logo slot returns to the study list on click: the
    // portal's links and button act on their own instead.
    function own(event) {
      event.stopPropagation();
    }
    return h(
      'div',
      {
        'data-cy': 'pacsportal-brand',
        onClick: own,
        style: { display: 'flex', flexDirection: 'column', maxWidth: '230px', cursor: 'default' },
      },
      h(
        'a',
        {
          href: portal.homeUrl,
          title: 'Back to the portal home',
          'data-cy': 'pacsportal-home',
          style: Object.assign({}, text, { color: '#ffffff', fontSize: '14px', fontWeight: 600 }),
        },
        portal.siteName
      ),
      h(
        'form',
        {
          method: 'post',
          action: portal.logoutUrl,
          style: { display: 'flex', alignItems: 'baseline', gap: '8px', margin: 0 },
        },
        h('input', { type: 'hidden', name: 'csrfmiddlewaretoken', value: portal.csrfToken }),
        h(
          'span',
          { 'data-cy': 'pacsportal-user', title: 'Signed in as ' + portal.userName, style: text },
          portal.userName
        ),
        h(
          'button',
          {
            type: 'submit',
            'data-cy': 'pacsportal-logout',
            style: Object.assign({}, text, {
              background: 'none',
              border: 0,
              padding: 0,
              color: '#5acce6',
              cursor: 'pointer',
              textDecoration: 'underline',
            }),
          },
          'Log out'
        )
      )
    );
  }

  config.whiteLabeling = Object.assign({}, config.whiteLabeling, { createLogoComponentFn: Brand });
})(window.config);
