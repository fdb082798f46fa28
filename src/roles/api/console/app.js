// The outbound operator console. Everything it shows comes from the REST API, read with the
// key the operator signed in with; the page counts nothing itself. The key lives in
// sessionStorage, so it is forgotten when the browser tab closes.
'use strict';

(() => {
  const KEY_ITEM = 'outbound.key';
  const main = document.getElementById('main');
  const nav = document.getElementById('nav');
  const whoBox = document.getElementById('who');
  const state = { key: sessionStorage.getItem(KEY_ITEM) || '', who: null, page: null };

  // ---------------------------------------------------------------------------------------
  // Elements, formatting

  /** An element with attributes (`on*` become listeners) and children (strings are text). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
      else if (name === 'class') el.className = value;
      else if (value === true) el.setAttribute(name, '');
      else el.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  /** Replaces an element's children, skipping absent ones (the DOM would print "null"). */
  function put(el, ...children) {
    el.replaceChildren(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
    return el;
  }

  const fmt = new Intl.NumberFormat();
  const num = (n) => (n === undefined || n === null ? '—' : fmt.format(n));
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : '—');
  const badge = (status) => h('span', { class: `badge ${status}` }, status.replace('_', ' '));
  const terminal = (s) => s.completed_calls + s.failed_calls + s.canceled_calls;

  function progress(stats, id) {
    const total = stats.total_calls;
    const done = terminal(stats);
    const pct = total ? Math.floor((done * 100) / total) : 0;
    return h('div', { class: 'progress' },
      h('progress', { max: total || 1, value: done, 'aria-label': 'calls finished', id }),
      h('span', { 'data-pct': pct }, `${pct}%`));
  }

  function toast(text, error) {
    const box = document.getElementById('toast');
    const item = h('div', { class: error ? 'error' : '' }, text);
    box.append(item);
    setTimeout(() => item.remove(), error ? 8000 : 4000);
  }

  /** A list of the problems of an error envelope. */
  function problems(data) {
    const details = (data && data.details) || [];
    return h('div', { class: 'errors', role: 'alert' },
      h('p', {}, (data && data.error) || 'request failed'),
      details.length ? h('ul', {}, details.map((d) => h('li', {}, d))) : null);
  }

  /** Asks before something that cannot be undone; resolves to true when confirmed. */
  function confirmAction(text, okLabel) {
    const dialog = document.getElementById('confirm');
    document.getElementById('confirm-text').textContent = text;
    document.getElementById('confirm-ok').textContent = okLabel || 'Confirm';
    dialog.returnValue = '';
    dialog.showModal();
    document.getElementById('confirm-cancel').focus();
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    });
  }

  // ---------------------------------------------------------------------------------------
  // The API

  function headers(extra) {
    const all = Object.assign({}, extra || {});
    if (state.key) all.Authorization = `Bearer ${state.key}`;
    return all;
  }

  /** One request: `{status, data}`, `data` the JSON body when there is one. */
  async function api(method, path, options) {
    const opts = options || {};
    const init = { method, headers: headers() };
    if (opts.json !== undefined) {
      init.body = JSON.stringify(opts.json);
      init.headers['Content-Type'] = 'application/json';
    } else if (opts.csv !== undefined) {
      init.body = opts.csv;
      init.headers['Content-Type'] = 'text/csv';
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      return { status: 0, data: { error: `the server cannot be reached (${err.message})` } };
    }
    let data = null;
    const text = await response.text();
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = { error: text }; }
    }
    if (response.status === 401 && !opts.signingIn) {
      signOut('Your key was refused; sign in again.');
    }
    return { status: response.status, data };
  }

  /** Whether the signed-in key may use a route (`whoami` lists them, from the server's rule). */
  const can = (method, route) => !!state.who && state.who.allowed.includes(`${method} ${route}`);

  /**
   * Follows a Server-Sent Events route until `signal` aborts, reconnecting after the server's
   * `retry`. EventSource cannot send a key, so the stream is read with fetch. `onState` hears
   * true (live), false (reconnecting) or null (gone or forbidden: no retry).
   */
  async function follow(path, onEvent, onState, signal) {
    let retry = 1000;
    while (!signal.aborted) {
      try {
        const response = await fetch(path, { headers: headers(), signal });
        if (response.status === 401) { signOut('Your key was refused; sign in again.'); return; }
        // A stream that is gone or forbidden stays so; only other failures are retried.
        if ([403, 404, 410].includes(response.status)) { onState(null); return; }
        if (response.status !== 200) throw new Error(`status ${response.status}`);
        onState(true);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let name = 'message';
            const data = [];
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) continue;
              const colon = line.indexOf(':');
              const field = colon < 0 ? line : line.slice(0, colon);
              let text = colon < 0 ? '' : line.slice(colon + 1);
              if (text.startsWith(' ')) text = text.slice(1);
              if (field === 'event') name = text;
              else if (field === 'data') data.push(text);
              else if (field === 'retry' && Number(text) > 0) retry = Number(text);
            }
            if (data.length) onEvent(name, JSON.parse(data.join('\n')));
          }
        }
      } catch (_) {
        if (signal.aborted) return;
      }
      onState(false);
      await new Promise((resolve) => setTimeout(resolve, retry));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Sign-in and the frame

  async function signIn(key) {
    state.key = key;
    const { status, data } = await api('GET', '/api/v1/whoami', { signingIn: true });
    if (status !== 200) {
      state.key = '';
      // Only a refused key is forgotten: a server restarting keeps the session.
      if (status === 401) sessionStorage.removeItem(KEY_ITEM);
      return status === 401 ? 'This key is unknown or revoked.' : (data && data.error) || `error ${status}`;
    }
    if (key) sessionStorage.setItem(KEY_ITEM, key);
    state.who = data;
    return null;
  }

  function signOut(message) {
    state.key = '';
    state.who = null;
    sessionStorage.removeItem(KEY_ITEM);
    leave();
    showSignIn(message);
  }

  function showSignIn(message) {
    put(nav);
    put(whoBox);
    const input = h('input', { id: 'api-key', type: 'password', autocomplete: 'off', required: true });
    const error = h('p', { class: 'errors', role: 'alert' }, message || '');
    const form = h('form', {
      onsubmit: async (event) => {
        event.preventDefault();
        const failed = await signIn(input.value.trim());
        if (failed) { error.textContent = failed; input.focus(); return; }
        frame();
        route();
      },
    },
    h('label', { for: 'api-key' }, 'API key', input),
    h('button', { class: 'primary', type: 'submit', id: 'sign-in' }, 'Sign in'),
    error,
    h('p', { class: 'muted' }, 'The key is kept for this browser tab only. ',
      'Make one with ', h('code', {}, 'outbound keys create --name NAME --role ROLE'), '.'));
    put(main, h('section', { class: 'card signin' }, h('h1', {}, 'Sign in'), form));
    input.focus();
  }

  function frame() {
    const links = [
      ['#/campaigns', 'Campaigns', can('GET', '/api/v1/campaigns')],
      ['#/campaigns/new', 'New campaign', can('POST', '/api/v1/campaigns')],
      ['#/dnc', 'Do not call', can('GET', '/api/v1/dnc')],
      ['#/keys', 'Keys', can('GET', '/api/v1/keys')],
      ['#/webhooks', 'Webhooks', can('GET', '/api/v1/webhooks')],
      ['#/audit', 'Audit log', can('GET', '/api/v1/audit')],
    ];
    put(nav, ...links.filter((l) => l[2]).map(([href, text]) => h('a', { href }, text)));
    const who = state.who;
    // Which auth mode is in force, so an operator sees at a glance whether the API is open.
    const mode = {
      keys: 'keys required',
      off: 'keys off (auth.mode = off)',
      auto: who.auth === 'off' ? 'no key needed on this host (auth.mode = auto)' : 'keys required (auth.mode = auto)',
    }[who.auth_mode] || '';
    put(whoBox,
      h('span', { class: 'muted', id: 'auth-mode' }, mode),
      who.key_name ? h('span', {}, `${who.key_name} (${who.role})`) : null,
      who.auth === 'off' && !state.key ? null
        : h('button', { type: 'button', onclick: () => signOut() }, 'Sign out'));
  }

  function markNav() {
    for (const link of nav.querySelectorAll('a')) {
      const here = location.hash === link.getAttribute('href')
        || (link.getAttribute('href') === '#/campaigns' && /^#\/campaigns\/(?!new)/.test(location.hash));
      if (here) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
    }
  }

  // ---------------------------------------------------------------------------------------
  // Pages. A page may leave streams and timers behind; `leave` stops them.

  function leave() {
    if (state.page) state.page.abort();
    state.page = null;
  }

  function route() {
    // In-page anchors (the skip link) are not pages.
    if (location.hash && !location.hash.startsWith('#/')) return;
    leave();
    if (!state.who) return;
    const page = new AbortController();
    state.page = page;
    const path = location.hash.replace(/^#/, '') || '/campaigns';
    markNav();
    let m;
    if (path === '/campaigns' || path === '/') campaignsPage(page.signal);
    else if (path === '/campaigns/new') newCampaignPage();
    else if ((m = path.match(/^\/campaigns\/([0-9a-fA-F-]{36})$/))) campaignPage(m[1], page.signal);
    else if ((m = path.match(/^\/calls\/([0-9a-fA-F-]{36})$/))) callPage(m[1], page.signal);
    else if (path === '/dnc') dncPage();
    else if (path === '/keys') keysPage();
    else if (path === '/webhooks') webhooksPage(page.signal);
    else if (path === '/audit') auditPage();
    else put(main, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/campaigns' }, 'Campaigns')));
    main.focus({ preventScroll: true });
  }

  /**
   * Pages through a list route with first/next controls. `load(token, body)` fills `body`
   * with the page at `token` and returns the next page's token.
   */
  function pager(load) {
    let current = '';
    let following = null;
    const body = h('div', {});
    const first = h('button', { type: 'button', disabled: true, onclick: () => show('') }, 'First page');
    const next = h('button', { type: 'button', disabled: true, onclick: () => show(following) }, 'Next page');
    let shown = 0;
    async function show(token) {
      // A refresh started before a newer show may answer after it; only the newest is shown.
      const mine = ++shown;
      const into = h('div', {});
      const after = await load(token || '', into);
      if (mine !== shown) return;
      current = token || '';
      following = after;
      body.replaceChildren(...into.childNodes);
      first.disabled = !current;
      next.disabled = !following;
    }
    return {
      el: h('div', {}, body, h('div', { class: 'actions' }, first, next)),
      show,
      refresh: async () => {
        // A refresh rebuilds the rows; a link the keyboard was on is focused again after it.
        const focused = body.contains(document.activeElement) ? document.activeElement.getAttribute('href') : null;
        await show(current);
        if (focused) {
          const again = [...body.querySelectorAll('a[href]')].find((a) => a.getAttribute('href') === focused);
          if (again) again.focus({ preventScroll: true });
        }
      },
    };
  }

  // Campaigns ------------------------------------------------------------------------------

  function campaignsPage(signal) {
    const status = h('select', { id: 'campaign-status-filter' },
      ['', 'pending', 'in_progress', 'paused', 'completed'].map((s) => h('option', { value: s }, s || 'any')));
    const list = pager(async (token, body) => {
      const q = new URLSearchParams({ limit: '20', page_token: token, status: status.value });
      const { status: code, data } = await api('GET', `/api/v1/campaigns?${q}`);
      if (code !== 200) { put(body, problems(data)); return null; }
      const rows = await Promise.all(data.campaigns.map(async (c) => {
        const stats = await api('GET', `/api/v1/campaigns/${c.id}/stats`);
        const s = stats.status === 200 ? stats.data : null;
        return h('tr', {},
          h('td', {}, h('a', { href: `#/campaigns/${c.id}` }, c.name)),
          h('td', {}, badge(c.status)),
          h('td', {}, s ? progress(s) : '—'),
          h('td', {}, s ? `${num(s.in_progress_calls)} / ${num(c.max_concurrent_calls)}` : '—'),
          h('td', { class: 'hide-narrow' }, when(c.created_at)));
      }));
      put(body, h('div', { class: 'scroll' }, h('table', { id: 'campaigns' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Status'), h('th', {}, 'Progress'),
          h('th', {}, 'Dialing / limit'), h('th', { class: 'hide-narrow' }, 'Created'))),
        h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No campaigns.'))))));
      return data.next_page_token;
    });
    status.addEventListener('change', () => list.show(''));
    put(main, 
      h('h1', {}, 'Campaigns',
        can('POST', '/api/v1/campaigns') ? h('a', { href: '#/campaigns/new', class: 'muted' }, 'New campaign') : null),
      h('section', { class: 'card' }, h('div', { class: 'inline' }, h('label', { for: 'campaign-status-filter' }, 'Status', status)), list.el));
    list.show('');
    // The list's figures move while campaigns run; it is read again every 5 s.
    const timer = setInterval(() => { if (!document.hidden) list.refresh(); }, 5000);
    signal.addEventListener('abort', () => clearInterval(timer));
  }

  function newCampaignPage() {
    if (!can('POST', '/api/v1/campaigns')) {
      put(main, h('h1', {}, 'New campaign'), h('p', {}, 'Your key may not create campaigns.'));
      return;
    }
    const field = (id, label, attrs) => {
      const input = h('input', Object.assign({ id, name: id }, attrs || {}));
      return [input, h('label', { for: id }, label, input)];
    };
    const [name, nameLabel] = field('name', 'Name', { required: true, maxlength: 200 });
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
    const [tz, tzLabel] = field('time_zone', 'Time zone (IANA)', { required: true, value: zone });
    const [limit, limitLabel] = field('max_concurrent_calls', 'Concurrent calls', { type: 'number', min: 1, max: 100000, placeholder: 'default' });
    const [caller, callerLabel] = field('caller_id', 'Caller id (E.164)', { placeholder: 'from configuration' });
    const [description, descriptionLabel] = field('description', 'Description');
    const [file, fileLabel] = field('targets_csv', 'Targets (CSV with a phone_number column)', { type: 'file', accept: '.csv,text/csv', required: true });
    fileLabel.classList.add('wide');
    descriptionLabel.classList.add('wide');
    // What the calls say: the engine's own message (spec/voice.md), checked with the targets;
    // the preview shows what each of the first targets will hear.
    const message = h('textarea', { id: 'message', name: 'message', rows: 6,
      placeholder: '{"identification": "This is Acme Dental.", "say": "Hello {{first_name}}.", "prompt": "Press 1 to confirm.", "responses": [{"digit": "1", "name": "confirmed"}]}' });
    const messageLabel = h('label', { for: 'message', class: 'wide' }, 'Message (JSON, optional: the words each call says, personalised from the CSV\'s columns)', message);
    const result = h('div', { id: 'preview', 'aria-live': 'polite' });
    const create = h('button', { type: 'button', class: 'primary', id: 'create', disabled: true }, 'Create campaign');
    const check = h('button', { type: 'submit', id: 'check' }, 'Check');

    const query = (dryRun) => {
      const q = new URLSearchParams({ name: name.value.trim(), time_zone: tz.value.trim() });
      if (limit.value) q.set('max_concurrent_calls', limit.value);
      if (caller.value.trim()) q.set('caller_id', caller.value.trim());
      if (description.value.trim()) q.set('description', description.value.trim());
      if (message.value.trim()) q.set('message', message.value.trim());
      if (dryRun) q.set('dry_run', 'true');
      return q;
    };
    const csv = async () => (file.files[0] ? file.files[0].text() : '');

    const form = h('form', {
      class: 'fields',
      onsubmit: async (event) => {
        event.preventDefault();
        create.disabled = true;
        put(result, h('p', { class: 'muted' }, 'Checking…'));
        const { status, data } = await api('POST', `/api/v1/campaigns?${query(true)}`, { csv: await csv() });
        if (status !== 200) { put(result, h('h2', {}, 'Rejected'), problems(data)); return; }
        const heard = data.preview.some((t) => t.spoken);
        const columns = ['phone_number', 'time_zone', ...new Set(data.preview.flatMap((t) => Object.keys(t.metadata || {}))), ...(heard ? ['heard'] : [])];
        put(result, 
          h('h2', {}, `${num(data.targets)} targets, no problem found`),
          h('p', { class: 'muted' }, `The first ${data.preview.length}, as they will be registered:`),
          h('div', { class: 'scroll' }, h('table', {},
            h('thead', {}, h('tr', {}, columns.map((c) => h('th', {}, c)))),
            h('tbody', {}, data.preview.map((t) => h('tr', {}, columns.map((c) => h('td', {},
              c === 'phone_number' ? t.phone_number : c === 'time_zone' ? (t.time_zone || '')
                : c === 'heard' ? (t.spoken || []).join(' ') : String((t.metadata || {})[c] ?? '')))))))));
        create.disabled = false;
        create.focus();
      },
      oninput: () => { create.disabled = true; },
    }, nameLabel, tzLabel, limitLabel, callerLabel, descriptionLabel, fileLabel, messageLabel,
    h('div', { class: 'actions wide' }, check, create));

    create.addEventListener('click', async () => {
      create.disabled = true;
      const { status, data } = await api('POST', `/api/v1/campaigns?${query(false)}`, { csv: await csv() });
      if (status !== 201) { put(result, h('h2', {}, 'Not created'), problems(data)); return; }
      toast(`Campaign ${data.name} created`);
      location.hash = `#/campaigns/${data.id}`;
    });
    put(main, h('h1', {}, 'New campaign'),
      h('section', { class: 'card' }, form),
      h('section', { class: 'card' }, result));
    name.focus();
  }

  // A campaign -----------------------------------------------------------------------------

  const CHART_POINTS = 3600;

  /** A live line chart of a few series, fed one snapshot at a time. */
  function liveChart(container, title, series, signal) {
    const data = [[], ...series.map(() => [])];
    const box = h('div', { class: 'chart card', role: 'img', 'aria-label': title }, h('h3', {}, title));
    container.append(box);
    const width = () => Math.max(200, box.clientWidth - 32);
    const clock = (u, splits) => splits.map((t) => new Date(t * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }));
    const plot = new uPlot({
      width: width(),
      height: 190,
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [{ values: clock, space: 90 }, {}],
      series: [{}, ...series.map((s) => Object.assign({ width: 2, points: { show: false } }, s))],
    }, data, box);
    // The grid gives a chart its width only once its neighbours are in place, and again on
    // every resize of the window.
    let drawnWidth = width();
    const observer = new ResizeObserver(() => {
      if (width() !== drawnWidth) { drawnWidth = width(); plot.setSize({ width: drawnWidth, height: 190 }); }
    });
    observer.observe(box);
    // uPlot keeps every chart in a global set until it is destroyed.
    signal.addEventListener('abort', () => { observer.disconnect(); plot.destroy(); });
    return {
      push(t, values) {
        data[0].push(t);
        values.forEach((v, i) => data[i + 1].push(v));
        if (data[0].length > CHART_POINTS) data.forEach((d) => d.shift());
        plot.setData(data);
      },
    };
  }

  function campaignPage(id, signal) {
    const title = h('span', {}, '…');
    const statusBadge = h('span', { id: 'campaign-status' });
    const live = h('span', { class: 'live off', id: 'live' }, 'connecting');
    const controls = h('div', { class: 'actions', id: 'controls' });
    const progressBox = h('div', { class: 'card' });
    const tiles = h('div', { class: 'tiles', id: 'tiles' });
    const responsesBox = h('section', { class: 'card', id: 'responses', hidden: true });
    const charts = h('div', { class: 'grid', id: 'charts' });
    const forecastBox = h('section', { class: 'card', id: 'forecast' }, h('h2', {}, 'Forecast'));
    const reasonsBox = h('section', { class: 'card', id: 'reasons' }, h('h2', {}, 'Waiting calls by reason'));
    const settingsBox = h('section', { class: 'card', id: 'settings' });
    const callsBox = h('section', { class: 'card', id: 'calls' });
    put(main, h('h1', {}, title, statusBadge, live), controls, progressBox, tiles, responsesBox, charts,
      h('div', { class: 'grid' }, forecastBox, reasonsBox), callsBox, settingsBox);

    let campaign = null;
    let stats = null;
    let last = null;
    let connected = false;
    const dialing = liveChart(charts, 'Dialing now vs limit', [
      { label: 'dialing', stroke: '#1d4ed8' }, { label: 'limit', stroke: '#b91c1c', dash: [6, 4] }], signal);
    const rate = liveChart(charts, 'Attempts per second', [{ label: 'attempts/s', stroke: '#7c3aed' }], signal);
    const outcomes = liveChart(charts, 'Outcomes over time', [
      { label: 'completed', stroke: '#15803d' }, { label: 'failed', stroke: '#b91c1c' }, { label: 'canceled', stroke: '#6b7280' }], signal);
    const retrying = liveChart(charts, 'Calls waiting for a retry', [
      { label: 'retrying', stroke: '#b45309' }, { label: 'queued', stroke: '#0e7490' }], signal);

    // One point per snapshot; between snapshots (nothing changed) the last one is repeated, so
    // the time axis moves on. The attempt rate is the attempts the API counted over the time;
    // it starts again after a reconnect, as the attempts of the gap have no known times.
    function plot(snapshot) {
      const t = Date.now() / 1000;
      const perSecond = last && t > last.t ? Math.max(0, (snapshot.attempts_total - last.attempts) / (t - last.t)) : null;
      last = { t, attempts: snapshot.attempts_total };
      dialing.push(t, [snapshot.in_progress_calls, campaign ? campaign.max_concurrent_calls : null]);
      rate.push(t, [perSecond]);
      outcomes.push(t, [snapshot.completed_calls, snapshot.failed_calls, snapshot.canceled_calls]);
      retrying.push(t, [snapshot.retrying_calls, snapshot.queued_calls]);
    }
    const ticker = setInterval(() => { if (connected && stats && last && Date.now() / 1000 - last.t >= 2) plot(stats); }, 1000);
    signal.addEventListener('abort', () => clearInterval(ticker));

    function showCampaign() {
      title.textContent = campaign.name;
      put(statusBadge, badge(campaign.status));
      document.title = `${campaign.name} · outbound`;
      const button = (label, action, klass, ask) => h('button', {
        type: 'button', class: klass, id: `${action}-campaign`,
        onclick: async () => {
          if (ask && !(await confirmAction(ask, label))) return;
          const { status, data } = await api('POST', `/api/v1/campaigns/${id}/${action}`);
          if (status === 204) toast(`${label}: done`); else toast((data && data.error) || `error ${status}`, true);
        },
      }, label);
      const st = campaign.status;
      const focused = controls.contains(document.activeElement) ? document.activeElement.id : null;
      put(controls, 
        st !== 'in_progress' && st !== 'completed' && can('POST', '/api/v1/campaigns/{id}/start')
          ? button(st === 'paused' ? 'Resume' : 'Start', 'start', 'primary',
            st === 'pending' ? `Start dialing ${campaign.name}?` : `Resume dialing ${campaign.name}?`) : null,
        st === 'in_progress' && can('POST', '/api/v1/campaigns/{id}/pause')
          ? button('Pause', 'pause', '', `Pause ${campaign.name}? Calls dialing now finish; no new call starts until it is resumed.`) : null,
        st !== 'completed' && can('POST', '/api/v1/campaigns/{id}/complete')
          ? button('Complete', 'complete', 'danger', `Complete ${campaign.name}? Every call not dialing yet is canceled; this cannot be undone.`) : null);
      // The buttons are rebuilt on every change; the keyboard stays on them (or on the page).
      if (focused) {
        const again = document.getElementById(focused) || controls.querySelector('button');
        (again || main).focus({ preventScroll: true });
      }
      // The settings follow the campaign unless the form holds edits not saved yet.
      if (!settingsBox.dataset.filled
        || (settingsBox.dataset.filled !== campaign.updated_at && !settingsBox.dataset.dirty
          && !settingsBox.contains(document.activeElement))) fillSettings();
    }

    function showStats() {
      const s = stats;
      put(progressBox, h('h2', {}, 'Progress'), progress(s, 'campaign-progress'),
        h('p', { class: 'muted' }, `${num(terminal(s))} of ${num(s.total_calls)} calls finished`));
      const tile = (label, value, tid) => h('div', { class: 'tile' }, h('div', { class: 'label' }, label), h('div', { class: 'value', id: tid }, value));
      put(tiles, 
        tile('Dialing / limit', `${num(s.in_progress_calls)} / ${campaign ? num(campaign.max_concurrent_calls) : '—'}`, 'tile-dialing'),
        tile('Queued', num(s.queued_calls)), tile('Retrying', num(s.retrying_calls)),
        tile('Completed', num(s.completed_calls), 'tile-completed'), tile('Failed', num(s.failed_calls)),
        tile('Canceled', num(s.canceled_calls)), tile('Attempts', num(s.attempts_total)),
        tile('Retries', num(s.retries_attempted)), tile('Avg call', `${(s.avg_duration_ms / 1000).toFixed(1)} s`));
      // What the calls heard back, for a campaign that speaks its own message.
      const responses = Object.entries(s.responses || {}).sort((a, b) => b[1] - a[1]);
      const speaks = campaign && campaign.message;
      responsesBox.hidden = !speaks && !responses.length;
      if (responsesBox.hidden) return;
      put(responsesBox, h('h2', {}, 'Responses'),
        h('div', { class: 'tiles' },
          responses.map(([name, calls]) => tile(name, num(calls), `response-${name}`)),
          tile('Opted out', num(s.opted_out), 'tile-opted-out'),
          tile('Voicemails left', num(s.voicemails_left), 'tile-voicemails'),
          tile('Machines', num(s.machine_answered), 'tile-machines')),
        responses.length ? null : h('p', { class: 'muted' }, 'No response yet.'));
    }

    follow(`/api/v1/campaigns/${id}/events`, (name, data) => {
      if (name === 'campaign') {
        const moved = campaign && campaign.status !== data.status;
        campaign = data;
        showCampaign();
        // What holds the waiting calls, and when the campaign ends, change with its status.
        if (moved) { forecast(); reasons(); }
      }
      if (name === 'stats') { stats = data; showStats(); plot(data); }
    }, (on) => {
      connected = !!on;
      if (on) last = null;
      live.className = `live ${on ? 'on' : 'off'}`;
      live.textContent = on ? 'live' : on === null ? 'unavailable' : 'reconnecting';
      if (on === null && !campaign) title.textContent = 'Campaign not found';
    }, signal);

    // Forecast, with a what-if limit and hours (the API answers them without changing anything).
    const whatIf = h('input', { id: 'what-if-limit', type: 'number', min: 1, max: 100000 });
    const whatIfHours = h('input', { id: 'what-if-hours', placeholder: '[{"day_of_week":1,"start":"09:00","end":"17:00"}]' });
    const forecastOut = h('div', { 'aria-live': 'polite' });
    async function forecast() {
      const q = new URLSearchParams();
      if (whatIf.value) q.set('max_concurrent_calls', whatIf.value);
      if (whatIfHours.value.trim()) q.set('business_hours', whatIfHours.value.trim());
      const query = q.toString() ? `?${q}` : '';
      const { status, data } = await api('GET', `/api/v1/campaigns/${id}/forecast${query}`);
      if (status !== 200) { put(forecastOut, problems(data)); return; }
      const a = data.assumptions;
      put(forecastOut, h('dl', { class: 'facts' },
        h('dt', {}, data.status === 'completed' ? 'Completed' : 'Completes'),
        h('dd', { id: 'forecast-at' }, data.completes_at ? when(data.completes_at) : 'not yet known (no call has ended)'),
        data.what_if.length ? [h('dt', {}, 'What if'), h('dd', {}, data.what_if.join(', '))] : null,
        h('dt', {}, 'Limit'), h('dd', {}, num(a.max_concurrent_calls)),
        h('dt', {}, 'Call length'), h('dd', {}, `${a.call_seconds.toFixed(1)} s (slot ${a.slot_seconds.toFixed(1)} s)`),
        h('dt', {}, 'Answer rate'), h('dd', {}, a.answer_rate === undefined ? '—' : `${(a.answer_rate * 100).toFixed(0)}%`),
        h('dt', {}, 'Attempts per call'), h('dd', {}, a.attempts_per_call.toFixed(2)),
        h('dt', {}, 'Attempts left'), h('dd', {}, num(Math.round(a.remaining_attempts))),
        h('dt', {}, 'Rate while open'), h('dd', {}, `${a.attempts_per_second.toFixed(1)} attempts/s`),
        h('dt', {}, 'Recipients sampled'), h('dd', {}, `${num(a.sampled_calls)} in ${num(a.recipient_groups)} rule groups`)));
    }
    forecastBox.append(h('form', { class: 'inline', onsubmit: (e) => { e.preventDefault(); forecast(); } },
      h('label', { for: 'what-if-limit' }, 'What if the limit were', whatIf),
      h('label', { for: 'what-if-hours' }, 'and the hours (JSON)', whatIfHours),
      h('button', { type: 'submit' }, 'Forecast')), forecastOut);

    const reasonsOut = h('div', {});
    reasonsBox.append(reasonsOut);
    let explaining = false;
    let explainAgain = false;
    async function reasons() {
      // Explaining reads every waiting call of the campaign: one request at a time, and one more
      // after it when asked meanwhile (the campaign moved on while it was answered).
      if (explaining) { explainAgain = true; return; }
      explaining = true;
      const { status, data } = await api('GET', `/api/v1/campaigns/${id}/explain`).finally(() => { explaining = false; });
      if (explainAgain) { explainAgain = false; reasons(); return; }
      if (status !== 200) { put(reasonsOut, problems(data)); return; }
      const entries = Object.entries(data.pending_by_reason);
      put(reasonsOut, 
        h('p', {}, data.dialable_now ? 'Calls are being dialed.' : 'Nothing is dialable now.',
          data.next_dial_at ? ` Next dial: ${when(data.next_dial_at)}.` : ''),
        entries.length ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Held by'), h('th', {}, 'Calls'))),
          h('tbody', {}, entries.map(([code, n]) => h('tr', {}, h('td', {}, code.replaceAll('_', ' ')), h('td', {}, num(n))))))
          : h('p', { class: 'muted' }, 'No waiting call is held.'));
    }
    forecast();
    reasons();
    const slow = setInterval(() => { if (!document.hidden) forecast(); }, 10000);
    const slower = setInterval(() => { if (!document.hidden) reasons(); }, 30000);
    signal.addEventListener('abort', () => { clearInterval(slow); clearInterval(slower); });

    // Calls: by status and by number.
    const callStatus = h('select', { id: 'call-status' },
      ['', 'queued', 'dialing', 'retrying', 'completed', 'failed', 'canceled'].map((s) => h('option', { value: s }, s || 'any')));
    const number = h('input', { id: 'call-number', type: 'search', placeholder: '+15555550100', inputmode: 'tel' });
    let searched = { status: '', phone_number: '' };
    const calls = pager(async (token, body) => {
      const q = new URLSearchParams({ limit: '25', page_token: token, ...searched });
      const { status, data } = await api('GET', `/api/v1/campaigns/${id}/calls?${q}`);
      if (status !== 200) { put(body, problems(data)); return null; }
      put(body, h('div', { class: 'scroll' }, h('table', { id: 'calls-table' },
        h('thead', {}, h('tr', {}, ['Number', 'Status', 'Attempts', 'Next attempt', 'Last error'].map((c) => h('th', {}, c)))),
        h('tbody', {}, data.calls.length ? data.calls.map((c) => h('tr', {},
          h('td', {}, h('a', { href: `#/calls/${c.id}` }, c.phone_number)), h('td', {}, badge(c.status)),
          h('td', {}, `${c.attempt_count} / ${c.max_attempts}`), h('td', {}, when(c.next_attempt_at)),
          h('td', {}, c.last_error || ''))) : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No call matches.'))))));
      return data.next_page_token;
    });
    callsBox.append(h('h2', {}, 'Calls'),
      h('form', { class: 'inline', role: 'search', onsubmit: (e) => {
        e.preventDefault();
        searched = { status: callStatus.value, phone_number: number.value.trim() };
        calls.show('');
      } },
        h('label', { for: 'call-status' }, 'Status', callStatus),
        h('label', { for: 'call-number' }, 'Number', number),
        h('button', { type: 'submit', id: 'call-search' }, 'Search')),
      calls.el);
    calls.show('');
    // Call statuses move while the campaign runs.
    const callsTimer = setInterval(() => { if (!document.hidden) calls.refresh(); }, 5000);
    signal.addEventListener('abort', () => clearInterval(callsTimer));

    // Settings, editable by who may update the campaign.
    function fillSettings(note) {
      settingsBox.dataset.filled = campaign.updated_at;
      delete settingsBox.dataset.dirty;
      const c = campaign;
      const editable = can('PUT', '/api/v1/campaigns/{id}') && c.status !== 'completed';
      const input = (idName, label, value, attrs) => {
        const el = h('input', Object.assign({ id: idName, value: value ?? '' }, attrs || {}));
        return h('label', { for: idName }, label, el);
      };
      const hours = h('textarea', { id: 'set-business_hours' }, JSON.stringify(c.business_hours));
      const out = h('div', { 'aria-live': 'polite' }, note ? h('p', { class: 'ok' }, note) : null);
      const form = h('form', {
        class: 'fields',
        onsubmit: async (event) => {
          event.preventDefault();
          const v = (n) => document.getElementById(`set-${n}`).value;
          let windows;
          try { windows = JSON.parse(hours.value || '[]'); } catch (err) {
            put(out, problems({ error: `business hours: not JSON (${err.message})` })); return;
          }
          const wanted = {
            name: v('name'), description: v('description'), max_concurrent_calls: Number(v('max_concurrent_calls')),
            retry_policy: { max_attempts: Number(v('max_attempts')), base_delay: v('base_delay'), max_delay: v('max_delay'), jitter: Number(v('jitter')) },
            business_hours: windows,
          };
          // Only what this form changed is sent, so a field someone else changed meanwhile stays theirs.
          const canon = (x) => (x && typeof x === 'object' && !Array.isArray(x)
            ? Object.keys(x).sort().map((k) => [k, canon(x[k])]) : Array.isArray(x) ? x.map(canon) : x ?? '');
          const same = (a, b) => JSON.stringify(canon(a)) === JSON.stringify(canon(b));
          const body = Object.fromEntries(Object.entries(wanted).filter(([k, value]) => !same(value, c[k])));
          if (!Object.keys(body).length) { put(out, h('p', { class: 'ok' }, 'Nothing to save.')); return; }
          const { status, data } = await api('PUT', `/api/v1/campaigns/${id}`, { json: body });
          if (status !== 200) { put(out, problems(data)); return; }
          campaign = data;
          // The form is filled again from what was saved: the next save compares with that.
          fillSettings('Saved.');
          showCampaign();
        },
        oninput: () => { settingsBox.dataset.dirty = '1'; },
      }, h('fieldset', { disabled: !editable, class: 'wide fields' },
        input('set-name', 'Name', c.name, { required: true }),
        input('set-description', 'Description', c.description),
        input('set-max_concurrent_calls', 'Concurrent calls', c.max_concurrent_calls, { type: 'number', min: 1, max: 100000 }),
        input('set-max_attempts', 'Attempts per call', c.retry_policy.max_attempts, { type: 'number', min: 1, max: 20 }),
        input('set-base_delay', 'First retry after', c.retry_policy.base_delay),
        input('set-max_delay', 'Longest retry delay', c.retry_policy.max_delay),
        input('set-jitter', 'Jitter (0–1)', c.retry_policy.jitter, { type: 'number', min: 0, max: 1, step: 0.05 }),
        h('label', { for: 'set-business_hours', class: 'wide' }, `Business hours in ${c.time_zone} (JSON; empty list: always)`, hours),
        editable ? h('div', { class: 'actions wide' }, h('button', { type: 'submit', class: 'primary' }, 'Save settings')) : null),
      out);
      put(settingsBox, h('h2', {}, 'Settings'), form);
    }
  }

  // A call ----------------------------------------------------------------------------------

  async function callPage(id, signal) {
    const [{ status, data }, explained] = await Promise.all([
      api('GET', `/api/v1/calls/${id}`), api('GET', `/api/v1/calls/${id}/explain`)]);
    // Left meanwhile (another page, or signed out): what came back is no longer wanted.
    if (signal.aborted) return;
    if (status !== 200) { put(main, h('h1', {}, 'Call'), problems(data)); return; }
    const c = data;
    const reasons = explained.status === 200 ? explained.data.reasons : [];
    put(main, 
      h('h1', {}, c.phone_number, badge(c.status)),
      h('p', {}, h('a', { href: `#/campaigns/${c.campaign_id}` }, '← campaign')),
      h('section', { class: 'card' }, h('dl', { class: 'facts' },
        h('dt', {}, 'Attempts'), h('dd', {}, `${c.attempt_count} / ${c.max_attempts}`),
        h('dt', {}, 'Scheduled'), h('dd', {}, when(c.scheduled_at)),
        h('dt', {}, 'Next attempt'), h('dd', {}, when(c.next_attempt_at)),
        h('dt', {}, 'Last attempt'), h('dd', {}, when(c.last_attempt_at)),
        h('dt', {}, 'Last error'), h('dd', {}, c.last_error || '—'))),
      h('section', { class: 'card', id: 'call-reasons' }, h('h2', {}, 'Why it waits'),
        explained.status !== 200 ? problems(explained.data)
          : reasons.length ? h('ul', {}, reasons.map((r) => h('li', {}, h('strong', {}, r.code.replaceAll('_', ' ')), `: ${r.message}`,
            r.until ? ` (until ${when(r.until)})` : '')))
            : h('p', {}, explained.data.dialable_now ? 'Nothing holds it: the next claim may dial it.' : 'Nothing holds it.')),
      h('section', { class: 'card' }, h('h2', {}, 'Attempts'), h('div', { class: 'scroll' }, h('table', { id: 'attempts' },
        h('thead', {}, h('tr', {}, ['#', 'Outcome', 'Started', 'Length', 'Error', 'Carrier'].map((t) => h('th', {}, t)))),
        h('tbody', {}, c.attempts.length ? c.attempts.map((a) => h('tr', {},
          h('td', {}, a.attempt), h('td', {}, badge(a.status)), h('td', {}, when(a.started_at)),
          h('td', {}, a.duration_ms === undefined ? '—' : `${(a.duration_ms / 1000).toFixed(1)} s`),
          h('td', {}, a.error || ''),
          h('td', {}, a.provider ? Object.entries(a.provider).map(([k, v]) => `${k.replaceAll('_', ' ')}: ${v}`).join(' · ') : '')))
          : h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'Not dialed yet.')))))));
  }

  // Do not call -----------------------------------------------------------------------------

  function dncPage() {
    const list = pager(async (token, body) => {
      const { status, data } = await api('GET', `/api/v1/dnc?${new URLSearchParams({ limit: '50', page_token: token })}`);
      if (status !== 200) { put(body, problems(data)); return null; }
      const removable = can('DELETE', '/api/v1/dnc/{number}');
      put(body, h('div', { class: 'scroll' }, h('table', { id: 'dnc-table' },
        h('thead', {}, h('tr', {}, ['Number', 'Scope', 'Reason', 'Listed', ''].map((t) => h('th', {}, t)))),
        h('tbody', {}, data.entries.length ? data.entries.map((e) => h('tr', {},
          h('td', {}, e.phone_number), h('td', {}, e.scope), h('td', {}, e.reason || ''), h('td', {}, when(e.created_at)),
          h('td', {}, removable && e.scope === 'global' ? h('button', {
            type: 'button', class: 'danger', 'aria-label': `Remove ${e.phone_number}`,
            onclick: async () => {
              if (!(await confirmAction(`Allow calls to ${e.phone_number} again?`, 'Remove'))) return;
              const r = await api('DELETE', `/api/v1/dnc/${encodeURIComponent(e.phone_number)}`);
              if (r.status === 204) { toast(`${e.phone_number} removed`); list.show(''); } else toast((r.data && r.data.error) || 'failed', true);
            },
          }, 'Remove') : ''))) : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'The list is empty.'))))));
      return data.next_page_token;
    });
    const numbers = h('textarea', { id: 'dnc-numbers', placeholder: '+15555550100\n+15555550101' });
    const reason = h('input', { id: 'dnc-reason', maxlength: 500 });
    const out = h('div', { 'aria-live': 'polite' });
    const lookup = h('input', { id: 'dnc-lookup', type: 'search', inputmode: 'tel', required: true });
    const scope = h('input', { id: 'dnc-campaign', placeholder: 'campaign id', pattern: '[0-9a-fA-F-]{36}' });
    const forCampaign = can('POST', '/api/v1/campaigns/{id}/dnc');
    const found = h('div', { 'aria-live': 'polite' });
    put(main, h('h1', {}, 'Do not call'),
      h('section', { class: 'card' }, h('h2', {}, 'Look up a number'),
        h('form', { class: 'inline', role: 'search', onsubmit: async (e) => {
          e.preventDefault();
          const { status, data } = await api('GET', `/api/v1/dnc/${encodeURIComponent(lookup.value.trim())}`);
          put(found, status === 200 ? h('p', {}, `${data.phone_number} is listed (${data.scope}) since ${when(data.created_at)}.`)
            : status === 404 ? h('p', {}, 'Not listed.') : problems(data));
        } }, h('label', { for: 'dnc-lookup' }, 'Number', lookup), h('button', { type: 'submit' }, 'Look up')), found),
      can('POST', '/api/v1/dnc') ? h('section', { class: 'card' }, h('h2', {}, 'Add numbers'),
        h('form', { class: 'fields', onsubmit: async (e) => {
          e.preventDefault();
          const list2 = numbers.value.split(/[\s,;]+/).filter(Boolean);
          const body = { numbers: list2 };
          if (reason.value.trim()) body.reason = reason.value.trim();
          const campaignId = forCampaign ? scope.value.trim() : '';
          const route = campaignId ? `/api/v1/campaigns/${encodeURIComponent(campaignId)}/dnc` : '/api/v1/dnc';
          const { status, data } = await api('POST', route, { json: body });
          if (status !== 200 && status !== 201) { put(out, problems(data)); return; }
          put(out, h('p', { class: 'ok' }, `${num(data.added)} added; ${num(data.canceled)} waiting calls canceled.`));
          numbers.value = '';
          list.show('');
        } },
        h('label', { for: 'dnc-numbers', class: 'wide' }, 'Numbers (one per line)', numbers),
        h('label', { for: 'dnc-reason' }, 'Reason', reason),
        forCampaign ? h('label', { for: 'dnc-campaign' }, 'Only for campaign (empty: every campaign)', scope) : null,
        h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'dnc-add' }, 'Add to the list'))), out) : null,
      h('section', { class: 'card' }, h('h2', {}, 'Listed numbers'), list.el));
    list.show('');
  }

  // Keys and the audit log ------------------------------------------------------------------

  function keysPage() {
    const out = h('div', { 'aria-live': 'polite' });
    const table = h('div', {});
    async function load() {
      const { status, data } = await api('GET', '/api/v1/keys');
      if (status !== 200) { put(table, problems(data)); return; }
      put(table, h('div', { class: 'scroll' }, h('table', { id: 'keys-table' },
        h('thead', {}, h('tr', {}, ['Name', 'Role', 'Created', 'Last used', 'Revoked', ''].map((t) => h('th', {}, t)))),
        h('tbody', {}, data.keys.map((k) => h('tr', {},
          h('td', {}, k.name), h('td', {}, k.role), h('td', {}, when(k.created_at)), h('td', {}, when(k.last_used_at)),
          h('td', {}, when(k.revoked_at)),
          h('td', {}, k.revoked_at || k.id === state.who.key_id ? '' : h('button', {
            type: 'button', class: 'danger', 'aria-label': `Revoke ${k.name}`,
            onclick: async () => {
              if (!(await confirmAction(`Revoke the key ${k.name}? Whoever uses it is refused within 5 seconds.`, 'Revoke'))) return;
              const r = await api('DELETE', `/api/v1/keys/${k.id}`);
              if (r.status === 204) { toast(`${k.name} revoked`); load(); } else toast((r.data && r.data.error) || 'failed', true);
            },
          }, 'Revoke'))))))));
    }
    const name = h('input', { id: 'key-name', required: true, maxlength: 100 });
    const role = h('select', { id: 'key-role' }, ['viewer', 'operator', 'admin'].map((r) => h('option', { value: r }, r)));
    put(main, h('h1', {}, 'API keys'),
      can('POST', '/api/v1/keys') ? h('section', { class: 'card' }, h('h2', {}, 'New key'),
        h('form', { class: 'inline', onsubmit: async (e) => {
          e.preventDefault();
          const { status, data } = await api('POST', '/api/v1/keys', { json: { name: name.value.trim(), role: role.value } });
          if (status !== 201) { put(out, problems(data)); return; }
          put(out, h('p', {}, `The key of ${data.name}, shown this once:`), h('p', { class: 'key', id: 'new-key' }, data.key));
          name.value = '';
          load();
        } }, h('label', { for: 'key-name' }, 'Name', name), h('label', { for: 'key-role' }, 'Role', role),
        h('button', { type: 'submit', class: 'primary', id: 'key-create' }, 'Create key')), out) : null,
      h('section', { class: 'card' }, table));
    load();
  }

  function webhooksPage(signal) {
    const out = h('div', { 'aria-live': 'polite' });
    const table = h('div', {});
    const log = h('section', { class: 'card', id: 'deliveries' });
    async function deliveries(hook, status) {
      const list = pager(async (token, body) => {
        const query = new URLSearchParams({ limit: '50', page_token: token, status });
        const { status: code, data } = await api('GET', `/api/v1/webhooks/${hook.id}/deliveries?${query}`);
        if (code !== 200) { put(body, problems(data)); return null; }
        put(body, h('div', { class: 'scroll' }, h('table', { id: 'deliveries-table' },
          h('thead', {}, h('tr', {}, ['Created', 'Event', 'Status', 'Tries', 'Last error', 'Next try', ''].map((t) => h('th', {}, t)))),
          h('tbody', {}, data.deliveries.map((d) => h('tr', {},
            h('td', {}, when(d.created_at)), h('td', {}, d.type), h('td', {}, badge(d.status)),
            h('td', {}, num(d.attempts)), h('td', {}, d.last_error || (d.last_status_code ? `status ${d.last_status_code}` : '')),
            h('td', {}, when(d.next_attempt_at)),
            h('td', {}, can('POST', '/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry') ? h('button', {
              type: 'button', 'aria-label': `Retry ${d.id}`,
              onclick: async () => {
                const r = await api('POST', `/api/v1/webhooks/${hook.id}/deliveries/${d.id}/retry`);
                if (r.status === 202) { toast('sent again'); setTimeout(() => list.show(''), 500); } else toast((r.data && r.data.error) || 'failed', true);
              },
            }, 'Retry') : '')))))));
        return data.next_page_token;
      });
      const filter = h('select', { id: 'deliveries-status', onchange: () => deliveries(hook, filter.value) },
        [['', 'all'], ['pending', 'pending'], ['failed', 'failed'], ['delivered', 'delivered']].map(([v, t]) =>
          h('option', v === status ? { value: v, selected: true } : { value: v }, t)));
      put(log, h('h2', {}, `Deliveries to ${hook.url}`), h('label', { for: 'deliveries-status' }, 'Status', filter), list.el);
      list.show('');
    }
    async function load() {
      const { status, data } = await api('GET', '/api/v1/webhooks');
      if (status !== 200) { put(table, problems(data)); return; }
      put(table, data.webhooks.length === 0 ? h('p', { class: 'muted' }, 'No endpoints yet.')
        : h('div', { class: 'scroll' }, h('table', { id: 'webhooks-table' },
          h('thead', {}, h('tr', {}, ['URL', 'Events', 'Campaign', 'Backlog', 'Failed', 'Created', ''].map((t) => h('th', {}, t)))),
          h('tbody', {}, data.webhooks.map((w) => h('tr', {},
            h('td', {}, w.url, w.description ? h('div', { class: 'muted' }, w.description) : null),
            h('td', {}, w.events.join(', ')), h('td', {}, w.campaign_id || 'all'),
            h('td', {}, num(w.pending)), h('td', {}, w.failed ? h('strong', {}, num(w.failed)) : num(w.failed)),
            h('td', {}, when(w.created_at)),
            h('td', {},
              h('button', { type: 'button', onclick: () => deliveries(w, w.failed ? 'failed' : '') }, 'Deliveries'),
              can('DELETE', '/api/v1/webhooks/{id}') ? h('button', {
                type: 'button', class: 'danger', 'aria-label': `Delete ${w.url}`,
                onclick: async () => {
                  if (!(await confirmAction(`Delete the endpoint ${w.url}? Its pending deliveries are dropped.`, 'Delete'))) return;
                  const r = await api('DELETE', `/api/v1/webhooks/${w.id}`);
                  if (r.status === 204) { toast('endpoint deleted'); put(log); load(); } else toast((r.data && r.data.error) || 'failed', true);
                },
              }, 'Delete') : null)))))));
    }
    const url = h('input', { id: 'webhook-url', required: true, type: 'url', placeholder: 'https://crm.example.com/hooks' });
    const events = h('input', { id: 'webhook-events', value: '*', required: true });
    put(main, h('h1', {}, 'Webhooks'),
      can('POST', '/api/v1/webhooks') ? h('section', { class: 'card' }, h('h2', {}, 'New endpoint'),
        h('form', { class: 'inline', onsubmit: async (e) => {
          e.preventDefault();
          const names = events.value.split(',').map((x) => x.trim()).filter(Boolean);
          const { status, data } = await api('POST', '/api/v1/webhooks', { json: { url: url.value.trim(), events: names } });
          if (status !== 201) { put(out, problems(data)); return; }
          put(out, h('p', {}, `The signing secret of ${data.url}, shown this once:`), h('p', { class: 'key', id: 'new-secret' }, data.secret));
          url.value = '';
          load();
        } }, h('label', { for: 'webhook-url' }, 'URL', url),
        h('label', { for: 'webhook-events' }, 'Events (comma-separated, * for all)', events),
        h('button', { type: 'submit', class: 'primary', id: 'webhook-create' }, 'Create endpoint')), out) : null,
      h('section', { class: 'card' }, table), log);
    load();
    // The backlog moves by itself: refresh it while the page is open.
    const timer = setInterval(load, 5000);
    signal.addEventListener('abort', () => clearInterval(timer));
  }

  function auditPage() {
    const list = pager(async (token, body) => {
      const { status, data } = await api('GET', `/api/v1/audit?${new URLSearchParams({ limit: '50', page_token: token })}`);
      if (status !== 200) { put(body, problems(data)); return null; }
      put(body, h('div', { class: 'scroll' }, h('table', { id: 'audit-table' },
        h('thead', {}, h('tr', {}, ['When', 'Key', 'Request', 'Target', 'Status'].map((t) => h('th', {}, t)))),
        h('tbody', {}, data.entries.map((e) => h('tr', {},
          h('td', {}, when(e.at)), h('td', {}, e.key_name || '—'), h('td', {}, `${e.method} ${e.route}`),
          h('td', {}, e.resource_id || ''), h('td', {}, e.status)))))));
      return data.next_page_token;
    });
    put(main, h('h1', {}, 'Audit log'), h('section', { class: 'card' }, list.el));
    list.show('');
  }

  // ---------------------------------------------------------------------------------------

  async function start() {
    const stored = state.key;
    const failed = await signIn(stored);
    // No key and none needed is a session too; no key where one is needed just asks for it.
    if (failed) { showSignIn(stored ? failed : ''); return; }
    frame();
    route();
  }

  window.addEventListener('hashchange', route);
  start();
})();
