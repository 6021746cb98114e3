/* imagebot playground: vanilla JS, no build step. Talks to the JSON API under /api/. */
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const els = {
    app: $('app'), sidebar: $('sidebar'), scrim: $('scrim'), threads: $('threads'),
    newThread: $('new-thread'), menu: $('menu'), banner: $('offline-banner'),
    title: $('thread-title'), meta: $('thread-meta'), chat: $('chat'), empty: $('empty'),
    examples: $('examples'), turns: $('turns'), composer: $('composer'), tray: $('ref-tray'),
    attach: $('attach'), fileInput: $('file-input'), prompt: $('prompt'), send: $('send'),
    model: $('model'), ratio: $('ratio'), size: $('size'), sizeOpt: $('size-opt'),
    search: $('search'), searchOpt: $('search-opt'), refCount: $('ref-count'),
    drop: $('drop-overlay'), toasts: $('toasts'), lightbox: $('lightbox'),
    lbImg: $('lightbox-img'), lbCaption: $('lightbox-caption'), lbDownload: $('lightbox-download'),
    lbClose: $('lightbox-close'), lbPrev: $('lightbox-prev'), lbNext: $('lightbox-next'),
    titleInput: $('title-input'), actions: $('thread-actions'), rename: $('rename-thread'),
    deleteThread: $('delete-thread'), batch: $('batch'), count: $('count'), countOpt: $('count-opt'),
  };
  const PROMPT_FILE = /\.(txt|csv|tsv|jsonl|ndjson)$/i;
  const LAST_THREAD = 'imagebot.lastThread';

  const EXAMPLES = [
    'A cozy reading nook in a treehouse at golden hour',
    'Product shot of a speckled ceramic mug on linen, soft window light',
    'A retro travel poster for Mars with bold typography',
    'Isometric cutaway of a tiny bakery, warm colors',
  ];

  const state = {
    config: null,
    threads: [],
    threadId: null,
    thread: null,
    pending: new Map(), // thread id -> {prompt, files, started, summary, error, finished}
    refs: [], // {file, url, name}
    promptFiles: [], // batch mode: .txt/.csv/.jsonl files of prompts
    lightbox: { items: [], index: 0 },
    stick: true,
    openSeq: 0,
  };

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(message, kind, status) {
      super(message);
      this.kind = kind;
      this.status = status;
    }
  }

  async function api(path, { method = 'GET', json, form } = {}) {
    const headers = {};
    let body;
    if (method !== 'GET') headers['X-Imagebot'] = '1';
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(json);
    } else if (form) {
      body = form;
    }
    let res;
    try {
      res = await fetch(path, { method, headers, body, credentials: 'same-origin' });
    } catch (err) {
      throw new ApiError('Could not reach imagebot. Is `imagebot serve` still running?',
        'network', 0);
    }
    const type = res.headers.get('Content-Type') || '';
    const data = type.includes('application/json') ? await res.json() : null;
    if (!res.ok) {
      const message = (data && data.error) || `The server answered ${res.status} ${res.statusText}.`;
      throw new ApiError(message, (data && data.kind) || 'http', res.status);
    }
    return data;
  }

  /**
   * Posts a turn and follows it live: the server answers with server-sent events
   * (accepted, started, progress...) and ends with the stored turn, or an error.
   */
  async function postLive(path, form, onEvent) {
    let res;
    try {
      res = await fetch(path, {
        method: 'POST', body: form, credentials: 'same-origin',
        headers: { 'X-Imagebot': '1', Accept: 'text/event-stream' },
      });
    } catch (err) {
      throw new ApiError('Could not reach imagebot. Is `imagebot serve` still running?', 'network', 0);
    }
    const type = res.headers.get('Content-Type') || '';
    if (!type.includes('text/event-stream')) {
      const data = type.includes('application/json') ? await res.json() : null;
      const message = (data && data.error) || `The server answered ${res.status} ${res.statusText}.`;
      throw new ApiError(message, (data && data.kind) || 'http', res.status);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (err) {
        break;
      }
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      let end = buffer.indexOf('\n\n');
      while (end >= 0) {
        const { name, data } = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf('\n\n');
        if (name === 'result') return data;
        if (name === 'error') throw new ApiError(data.error, data.kind, data.status || 0);
        onEvent(name, data);
      }
    }
    throw new ApiError('The connection closed before the turn finished. Reload the page to see '
      + 'whether it was saved.', 'network', 0);
  }

  function parseEvent(frame) {
    let name = 'message';
    let data = '';
    for (const line of frame.split('\n')) {
      if (line.startsWith('event: ')) name = line.slice(7);
      else if (line.startsWith('data: ')) data += line.slice(6);
    }
    return { name, data: data ? JSON.parse(data) : null };
  }

  // ---------------------------------------------------------------- small DOM helpers

  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const ICONS = {
    download: 'M12 4v12M7 11l5 5 5-5M4 20h16',
    expand: 'M15 3h6v6M9 21H3v-6M21 3l-7 7M3 21l7-7',
    close: 'M6 6l12 12M18 6 6 18',
    alert: 'M12 8v5M12 16.5h.01M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18Z',
    link: 'M10 14a5 5 0 0 0 7 0l3-3a5 5 0 0 0-7-7l-1 1M14 10a5 5 0 0 0-7 0l-3 3a5 5 0 0 0 7 7l1-1',
  };

  function icon(name) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('d', ICONS[name]);
    svg.append(path);
    return svg;
  }

  function safeUrl(url) {
    try {
      const parsed = new URL(url, location.href);
      return parsed.protocol === 'https:' || parsed.protocol === 'http:' ? parsed.href : null;
    } catch (err) {
      return null;
    }
  }

  /** A thumbnail that turns into a named tile when the browser cannot decode the file. */
  function thumb(url, name) {
    const tile = () => h('span', { class: 'file-tile', text: name });
    if (!url) return tile();
    const image = h('img', { src: url, alt: name, loading: 'lazy' });
    image.addEventListener('error', () => image.replaceWith(tile()), { once: true });
    return image;
  }

  function toast(message) {
    const node = h('div', { class: 'toast', role: 'alert' });
    appendInline(node, message);
    els.toasts.append(node);
    setTimeout(() => node.remove(), 6000);
  }

  // ---------------------------------------------------------------- text rendering

  const INLINE = /\*\*([^*]+)\*\*|`([^`]+)`|\*([^*\s][^*]*)\*|\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g;

  function appendInline(parent, text) {
    let last = 0;
    for (const match of text.matchAll(INLINE)) {
      parent.append(text.slice(last, match.index));
      if (match[1] !== undefined) parent.append(h('strong', { text: match[1] }));
      else if (match[2] !== undefined) parent.append(h('code', { text: match[2] }));
      else if (match[3] !== undefined) parent.append(h('em', { text: match[3] }));
      else {
        const href = safeUrl(match[5]);
        parent.append(href ? h('a', { href, target: '_blank', rel: 'noopener noreferrer', text: match[4] })
          : match[0]);
      }
      last = match.index + match[0].length;
    }
    parent.append(text.slice(last));
    return parent;
  }

  function renderText(text) {
    const root = h('div', { class: 'text-part' });
    let para = null;
    let list = null;
    for (const raw of text.replace(/\r\n/g, '\n').split('\n')) {
      const line = raw.trimEnd();
      const item = line.match(/^\s*(?:[-*•]|(\d+)[.)])\s+(.*)$/);
      const heading = line.match(/^#{1,6}\s+(.*)$/);
      if (!line.trim()) {
        para = null;
        list = null;
      } else if (item) {
        para = null;
        if (!list) {
          list = h(item[1] ? 'ol' : 'ul');
          root.append(list);
        }
        list.append(appendInline(h('li'), item[2]));
      } else if (heading) {
        para = null;
        list = null;
        root.append(appendInline(h('h3'), heading[1]));
      } else {
        list = null;
        if (para) para.append(h('br'));
        else {
          para = h('p');
          root.append(para);
        }
        appendInline(para, line);
      }
    }
    return root;
  }

  // ---------------------------------------------------------------- options

  function caps(modelId) {
    const models = state.config ? state.config.models : [];
    return models.find((m) => m.id === modelId)
      || { id: modelId, label: modelId, sizes: [], max_refs: 3, search: false, ratios: [], max_count: 4 };
  }

  function currentCaps() {
    return caps(els.model.value);
  }

  function setupSelectors(config) {
    for (const model of config.models) {
      els.model.append(h('option', { value: model.id, text: model.label }));
    }
    els.ratio.append(h('option', { value: 'auto', text: 'Auto' }));
    for (const ratio of config.ratios) els.ratio.append(h('option', { value: ratio, text: ratio }));
    for (const size of config.sizes) els.size.append(h('option', { value: size, text: size }));
  }

  function applySettings(settings) {
    if (!settings) return;
    if (![...els.model.options].some((o) => o.value === settings.model)) {
      els.model.append(h('option', { value: settings.model, text: settings.model }));
    }
    els.model.value = settings.model;
    els.ratio.value = settings.aspect_ratio || 'auto';
    els.size.value = settings.size || '1K';
    els.search.checked = Boolean(settings.search);
    updateOptionStates();
  }

  function updateOptionStates() {
    const model = currentCaps();
    const sized = model.sizes.length > 0;
    for (const option of els.size.options) option.disabled = sized && !model.sizes.includes(option.value);
    els.size.disabled = !sized;
    els.sizeOpt.classList.toggle('is-disabled', !sized);
    els.sizeOpt.title = sized ? '' : `${model.label} makes images at one fixed size (about 1024 px).`;
    const ratios = model.ratios && model.ratios.length ? model.ratios : null;
    for (const option of els.ratio.options) {
      option.disabled = Boolean(ratios) && option.value !== 'auto' && !ratios.includes(option.value);
    }
    if (els.ratio.selectedOptions[0] && els.ratio.selectedOptions[0].disabled) els.ratio.value = 'auto';
    const most = els.batch.checked ? 1 : (model.max_count || 4);
    for (const option of els.count.options) option.disabled = Number(option.value) > most;
    if (Number(els.count.value) > most) els.count.value = '1';
    els.countOpt.classList.toggle('is-disabled', most === 1);
    els.search.disabled = !model.search;
    if (!model.search) els.search.checked = false;
    els.searchOpt.classList.toggle('is-disabled', !model.search);
    els.searchOpt.title = model.search ? 'Ground the answer on Google Search'
      : `${model.label} cannot use Google Search.`;
    renderRefTray();
  }

  function selectedOptions() {
    const model = currentCaps();
    const options = { model: model.id, aspect_ratio: els.ratio.value };
    if (model.sizes.length) options.size = els.size.value;
    if (model.search) options.search = els.search.checked;
    return options;
  }

  function summary() {
    const model = currentCaps();
    const bits = [model.label];
    if (model.sizes.length) bits.push(els.size.value || '1K');
    bits.push(els.ratio.value === 'auto' ? 'auto ratio' : els.ratio.value);
    if (model.search && els.search.checked) bits.push('search');
    if (els.count.value !== '1') bits.push(`${els.count.value} candidates`);
    return bits.join(' · ');
  }

  async function saveSettings() {
    updateOptionStates();
    const id = state.threadId;
    // A draft thread is not on the server yet: its first turn carries the selectors.
    if (!id || !state.thread || !state.thread.saved) return;
    try {
      const data = await api(`/api/threads/${id}/settings`, { method: 'PUT', json: selectedOptions() });
      if (state.threadId === id && state.thread) state.thread.settings = data.settings;
    } catch (err) {
      toast(err.message);
    }
  }

  // ---------------------------------------------------------------- reference images

  function addFiles(files) {
    const model = currentCaps();
    for (const file of files) {
      if (els.batch.checked && (PROMPT_FILE.test(file.name || '') || (file.type || '').startsWith('text/'))) {
        state.promptFiles.push(file);
        continue;
      }
      if (state.refs.length >= model.max_refs) {
        toast(model.max_refs === 0
          ? `${model.label} makes images from the prompt alone; it takes no reference images.`
          : `${model.label} takes at most ${model.max_refs} reference images per message.`);
        break;
      }
      const isImage = (file.type || '').startsWith('image/');
      const ref = { file, name: file.name || 'pasted image', url: isImage ? URL.createObjectURL(file) : null };
      if (ref.url) {
        const probe = new Image();
        probe.addEventListener('load', () => {
          ref.width = probe.naturalWidth;
          ref.height = probe.naturalHeight;
        }, { once: true });
        probe.src = ref.url;
      }
      state.refs.push(ref);
    }
    renderRefTray();
  }

  function renderRefTray() {
    const item = (list, index, name, url) => h('div', { class: 'ref-item', title: name },
      thumb(url, name),
      h('button', {
        type: 'button', class: 'remove', 'aria-label': `Remove ${name}`,
        onclick: () => {
          list.splice(index, 1);
          renderRefTray();
        },
      }, icon('close')));
    els.tray.replaceChildren(...state.refs.map((ref, index) => item(state.refs, index, ref.name, ref.url)),
      ...state.promptFiles.map((file, index) => item(state.promptFiles, index, file.name, null)));
    els.tray.hidden = state.refs.length === 0 && state.promptFiles.length === 0;
    const max = currentCaps().max_refs;
    els.refCount.textContent = state.refs.length ? `${state.refs.length} / ${max} references`
      : (max ? `up to ${max} references` : 'no references (prompt only)');
  }

  // ---------------------------------------------------------------- threads

  function threadFromHash() {
    const match = location.hash.match(/^#\/t\/([A-Za-z0-9_-]{1,64})$/);
    return match ? match[1] : null;
  }

  /** A new thread's id, made here: the server keeps the thread once its first turn succeeds. */
  function newThreadId() {
    const bytes = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs https
    return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  }

  function rememberThread(id) {
    try {
      if (id) localStorage.setItem(LAST_THREAD, id);
      else localStorage.removeItem(LAST_THREAD);
    } catch (err) {
      // storage may be off (private mode); reopening the last thread is only a convenience
    }
  }

  /** Where `/` starts: the thread open last time, else the most recent one, else a new one. */
  function startingThread() {
    let last = null;
    try {
      last = localStorage.getItem(LAST_THREAD);
    } catch (err) {
      last = null;
    }
    if (last && state.threads.some((t) => t.id === last)) return last;
    return state.threads.length ? state.threads[0].id : null;
  }

  function relativeTime(seconds) {
    const delta = Date.now() / 1000 - seconds;
    if (delta < 60) return 'just now';
    if (delta < 3600) return `${Math.floor(delta / 60)} min ago`;
    if (delta < 86400) return `${Math.floor(delta / 3600)} h ago`;
    return new Date(seconds * 1000).toLocaleDateString();
  }

  async function loadThreads() {
    try {
      state.threads = (await api('/api/threads')).threads;
    } catch (err) {
      toast(err.message);
    }
    renderThreads();
  }

  function renderThreads() {
    // A new thread whose first turn is running shows up at once; it is listed for good
    // once that turn succeeds (a failed first turn leaves nothing behind).
    const starting = [...state.pending].filter(([id, p]) => !p.error
      && !state.threads.some((t) => t.id === id))
      .map(([id, p]) => ({ id, title: '', turns: 0, updated_at: p.startedAt }));
    const threads = [...starting, ...state.threads];
    if (!threads.length) {
      els.threads.replaceChildren(h('div', { class: 'threads-empty', text: 'No threads yet.' }));
      return;
    }
    els.threads.replaceChildren(...threads.map((thread) => {
      const pending = state.pending.get(thread.id);
      const turns = thread.turns ? `${thread.turns} turn${thread.turns === 1 ? '' : 's'}` : 'generating';
      return h('a', {
        class: `thread-link${thread.id === state.threadId ? ' active' : ''}`,
        href: `#/t/${thread.id}`, 'data-thread': thread.id,
        'aria-current': thread.id === state.threadId ? 'page' : null,
      },
      h('span', { class: 't-title' }, pending && !pending.error ? h('span', { class: 'busy-dot' }) : null,
        h('span', { class: 't-text', text: thread.title || (pending && pending.prompt) || 'Untitled thread' })),
      h('span', { class: 't-meta', text: `${turns} · ${relativeTime(thread.updated_at)}` }));
    }));
  }

  function newThread() {
    closeNav();
    if (state.threadId === null) {
      els.prompt.focus(); // already on a new, empty thread
      return;
    }
    location.hash = '#/';
    els.prompt.focus();
  }

  async function openThread(id) {
    const seq = ++state.openSeq;
    state.threadId = id;
    closeNav();
    stopRenaming();
    renderThreads();
    if (!id) {
      state.thread = { id: null, title: '', turns: [] };
      renderThread();
      return;
    }
    const known = state.threads.find((t) => t.id === id);
    // Shown until the turns arrive, so the previous thread's turns never linger.
    state.thread = { id, title: known ? known.title : '', turns: [], loading: true };
    renderThread();
    try {
      const data = await api(`/api/threads/${id}`);
      if (seq !== state.openSeq) return;
      state.thread = { ...data, batches: data.batches || [], saved: true };
      applySettings(data.settings);
      rememberThread(id);
      loadBatchLines(state.thread);
    } catch (err) {
      if (seq !== state.openSeq) return;
      if (err.status === 404 && state.pending.has(id)) {
        state.thread = { id, title: '', turns: [] }; // a new thread whose first turn failed
        renderThread();
        return;
      }
      state.thread = { id, title: '', turns: [] };
      toast(err.status === 404 ? 'That thread does not exist here. Start a new one.' : err.message);
      if (err.status === 404) location.hash = '#/';
      else renderThread();
      return;
    }
    state.stick = true;
    renderThread();
  }

  // ---------------------------------------------------------------- rendering turns

  function renderThread() {
    const thread = state.thread || { turns: [] };
    const pending = state.threadId ? state.pending.get(state.threadId) : null;
    const nodes = thread.turns.map(renderTurn);
    nodes.push(...(thread.batches || []).map(renderBatch));
    if (thread.loading) {
      nodes.push(h('li', { class: 'thread-loading', role: 'status' }, h('span', { class: 'spinner' }),
        h('span', { text: 'Loading thread…' })));
    } else if (pending) nodes.push(renderPending(pending));
    els.turns.replaceChildren(...nodes);
    els.empty.hidden = nodes.length > 0;
    const first = thread.turns[0];
    const fallback = thread.loading ? 'Loading…' : 'New thread';
    const title = thread.title || (first && first.prompt) || (pending && pending.prompt) || fallback;
    els.title.textContent = title;
    document.title = `${title} · imagebot`;
    const count = thread.turns.length;
    const batches = (thread.batches || []).length;
    els.meta.textContent = [count ? `${count} turn${count === 1 ? '' : 's'}` : '',
      batches ? `${batches} batch${batches === 1 ? '' : 'es'}` : ''].filter(Boolean).join(' · ');
    els.actions.hidden = !thread.saved;
    scrollToEnd(false);
  }

  // ---------------------------------------------------------------- renaming and deleting

  function startRenaming() {
    if (!state.thread || !state.thread.saved) return;
    els.titleInput.value = els.title.textContent;
    els.title.hidden = true;
    els.titleInput.hidden = false;
    els.titleInput.focus();
    els.titleInput.select();
  }

  function stopRenaming() {
    els.titleInput.hidden = true;
    els.title.hidden = false;
  }

  async function finishRenaming() {
    if (els.titleInput.hidden) return;
    const id = state.threadId;
    const title = els.titleInput.value.trim();
    stopRenaming();
    if (!title || title === els.title.textContent) return;
    try {
      const data = await api(`/api/threads/${id}`, { method: 'PATCH', json: { title } });
      if (state.thread && state.thread.id === id) state.thread.title = data.title;
      const listed = state.threads.find((t) => t.id === id);
      if (listed) listed.title = data.title;
      renderThread();
      renderThreads();
    } catch (err) {
      toast(err.message);
    }
  }

  async function deleteThread() {
    const id = state.threadId;
    if (!id || !state.thread || !state.thread.saved) return;
    const running = state.pending.get(id);
    if (running && !running.error) {
      toast('A turn is still running in this thread. Delete it once the turn has finished.');
      return;
    }
    if (!window.confirm('Delete this thread and all its turns? This cannot be undone.')) return;
    try {
      await api(`/api/threads/${id}`, { method: 'DELETE' });
    } catch (err) {
      toast(err.message);
      return;
    }
    state.pending.delete(id);
    state.threads = state.threads.filter((t) => t.id !== id);
    rememberThread(null);
    const next = state.threads.length ? `#/t/${state.threads[0].id}` : '#/';
    location.hash = next;
  }

  function scrollToEnd(smooth) {
    if (!state.stick) return;
    requestAnimationFrame(() => {
      els.chat.scrollTo({ top: els.chat.scrollHeight, behavior: smooth ? 'smooth' : 'instant' });
    });
  }

  function userMessage(prompt, refs) {
    const strip = refs.length ? h('div', { class: 'ref-strip' }, refs.map((ref) => {
      const button = h('button', {
        type: 'button', class: 'ref-thumb', title: ref.name, 'data-lightbox': ref.url ? '' : null,
        'data-group': 'refs',
        'data-full': ref.url, 'data-download': ref.download_url || ref.url,
        'data-caption': `Reference · ${ref.name}`,
      }, thumb(ref.url, ref.name));
      return button;
    })) : null;
    return h('div', { class: 'user-msg' }, h('div', { class: 'user-bubble', text: prompt }), strip);
  }

  function figure(part, caption) {
    const image = h('img', {
      src: part.url, alt: `${caption} ${part.width}×${part.height}`, loading: 'lazy', decoding: 'async',
      width: part.width || null, height: part.height || null,
    });
    image.addEventListener('load', () => scrollToEnd(false));
    const open = h('button', {
      type: 'button', class: 'open', 'data-lightbox': '', 'data-group': 'images', 'data-full': part.url,
      'data-download': part.download_url, 'data-caption': `${caption} · ${part.width}×${part.height}`,
      'aria-label': 'Open full size',
    }, image);
    return h('figure', { class: 'figure' }, open,
      part.width ? h('span', { class: 'dims', text: `${part.width}×${part.height}` }) : null,
      h('div', { class: 'figure-bar' },
        h('a', { class: 'chip-btn', href: part.download_url, download: '', title: 'Download' },
          icon('download'), 'Download')));
  }

  function renderParts(parts, caption) {
    return parts.map((part) => (part.kind === 'image' ? figure(part, caption) : renderText(part.text)));
  }

  function renderThinking(thoughts) {
    if (!thoughts.length) return null;
    const images = thoughts.filter((p) => p.kind === 'image').length;
    const label = images ? `Thinking · ${images} draft image${images === 1 ? '' : 's'}` : 'Thinking';
    return h('details', { class: 'thinking' }, h('summary', { text: label }),
      h('div', { class: 'thinking-body' }, renderParts(thoughts, 'Thought image')));
  }

  function renderGrounding(turn) {
    const sources = turn.sources.filter((s) => safeUrl(s.url));
    if (!sources.length && !turn.search_queries.length && !turn.search_entry_point) return null;
    const box = h('div', { class: 'grounding' });
    if (sources.length) {
      box.append(h('span', { class: 'grounding-label', text: 'Sources' }),
        h('ol', { class: 'sources' }, sources.map((s, i) => h('li', {},
          h('a', { href: safeUrl(s.url), target: '_blank', rel: 'noopener noreferrer', title: s.url },
            h('span', { class: 'num', text: String(i + 1) }), h('span', { text: s.title || s.url }))))));
    }
    if (turn.search_queries.length) {
      box.append(h('div', { class: 'queries', text: `Searched: ${turn.search_queries.join(' · ')}` }));
    }
    if (turn.search_entry_point) {
      const frame = h('iframe', {
        class: 'search-frame', title: 'Google Search suggestions',
        sandbox: 'allow-popups allow-popups-to-escape-sandbox', referrerpolicy: 'no-referrer',
      });
      // Shown as Google provides it; the wrapper only opens chips in a new tab and matches
      // the page's colour scheme so the frame stays transparent.
      frame.srcdoc = '<meta name="color-scheme" content="light dark"><base target="_blank">'
        + `<style>body{margin:0}</style>${turn.search_entry_point}`;
      box.append(frame);
    }
    return box;
  }

  function renderNotices(turn) {
    // The offline badge in the footer and the banner already say what this notice says.
    const notices = turn.notices.filter((n) => !(turn.offline && /^Offline preview/i.test(n)));
    if (!notices.length) return null;
    return h('ul', { class: 'notices' }, notices.map((n) => {
      const warn = /offline/i.test(n);
      return appendInline(h('li', { class: warn ? 'warn' : '' }, h('span', { text: warn ? '⚠️' : 'ℹ️' }), ' '),
        n);
    }));
  }

  function renderMeta(turn) {
    const badge = 'OFFLINE PREVIEW · ';
    const offline = turn.footer.startsWith(badge);
    const text = offline ? turn.footer.slice(badge.length) : turn.footer;
    const usage = turn.usage || {};
    const detail = `prompt ${usage.prompt_tokens || 0} · output ${usage.output_tokens || 0}`
      + ` · thinking ${usage.thought_tokens || 0} tokens · ${turn.model}`;
    return h('div', { class: 'meta' },
      offline ? h('span', { class: 'badge', text: 'Offline preview' }) : null,
      h('span', { class: 'footer-line', text, title: detail }),
      h('button', { type: 'button', class: 'link-btn', text: 'Delete', onclick: () => deleteTurn(turn) }));
  }

  function renderCandidates(turn) {
    return h('div', { class: 'candidates' }, turn.candidates.map((c) => {
      const label = `U${c.number}`;
      const body = c.error
        ? appendInline(h('div', { class: 'error-text' }), c.error)
        : renderParts(c.parts.filter((p) => p.kind === 'image'), label);
      const action = c.chosen
        ? h('span', { class: 'badge in-use', text: 'In use ✓', title: 'The conversation continues from this one' })
        : (c.error ? null : h('button', {
          type: 'button', class: 'chip-btn use-btn', text: `Use ${label}`,
          onclick: () => useCandidate(turn, c.number),
        }));
      return h('div', { class: `candidate${c.chosen ? ' chosen' : ''}`, 'data-candidate': label },
        h('div', { class: 'candidate-bar' }, h('strong', { text: label }), action), body);
    }));
  }

  async function useCandidate(turn, number) {
    try {
      const data = await api(`/api/turns/${turn.id}/use`, { method: 'POST', json: { number } });
      if (state.thread) {
        state.thread.turns = state.thread.turns.map((t) => (t.id === turn.id ? data.turn : t));
      }
      renderThread();
    } catch (err) {
      toast(err.message);
    }
  }

  function renderTurn(turn) {
    const gallery = turn.candidates && turn.candidates.length > 1;
    const card = h('div', { class: 'bot-card' },
      renderThinking(turn.thoughts),
      gallery ? renderCandidates(turn) : h('div', { class: 'parts' }, renderParts(turn.parts, 'Image')),
      renderGrounding(turn),
      renderNotices(turn),
      renderMeta(turn));
    return h('li', { class: 'turn', 'data-turn': turn.id },
      userMessage(turn.prompt, turn.refs), h('div', { class: 'bot-msg' }, card));
  }

  function renderPending(pending) {
    const user = userMessage(pending.prompt, pending.files);
    if (pending.error) {
      const seconds = ((pending.finished - pending.started) / 1000).toFixed(1);
      const text = appendInline(h('div', { class: 'error-text' }), pending.error.message);
      const after = pending.error.kind === 'cancelled' ? `Cancelled after ${seconds}s`
        : `Nothing was saved · failed after ${seconds}s`;
      text.append(h('span', { class: 'error-kind', text: after }));
      const card = h('div', { class: 'error-card', role: 'alert' }, icon('alert'), text,
        h('button', {
          type: 'button', class: 'icon-btn', 'aria-label': 'Dismiss',
          onclick: () => {
            state.pending.delete(state.threadId);
            renderThread();
          },
        }, icon('close')));
      return h('li', { class: 'turn failed' }, user, h('div', { class: 'bot-msg' }, card));
    }
    const timer = h('span', { class: 'timer', 'data-started': String(pending.started),
      text: `${((performance.now() - pending.started) / 1000).toFixed(1)}s` });
    const shimmer = h('div', { class: 'shimmer', 'data-ratio': pending.ratio.join(':') });
    const [width, height] = pending.ratio;
    // As big as the image will be shown, within 420 × 360.
    shimmer.style.width = `${Math.round(Math.min(420, (360 * width) / height))}px`;
    shimmer.style.aspectRatio = `${width} / ${height}`;
    const cancel = pending.ticket ? h('button', {
      type: 'button', class: 'cancel-btn', text: pending.cancelling ? 'Cancelling…' : 'Cancel',
      disabled: pending.cancelling, onclick: () => cancelTurn(pending),
    }) : null;
    const card = h('div', { class: 'bot-card' },
      h('div', { class: 'pending' }, h('span', { class: 'spinner' }),
        h('span', { class: 'live-status', text: liveStatus(pending) }), timer, cancel),
      renderLiveThought(pending),
      renderLiveDrafts(pending),
      shimmer);
    return h('li', { class: 'turn pending-turn' }, user, h('div', { class: 'bot-msg' }, card));
  }

  /** What the pending turn is doing, in the server's words: its place in line, or its stage. */
  function liveStatus(pending) {
    if (pending.queued) return pending.queued;
    if (!pending.label || pending.stage === 'sending') return `Generating with ${pending.summary}…`;
    const drafts = pending.drafts.length;
    const count = drafts ? ` · ${drafts} draft${drafts === 1 ? '' : 's'}` : '';
    return `${pending.label}…${count} · ${pending.summary}`;
  }

  function renderLiveThought(pending) {
    if (!pending.thoughts.length) return null;
    return h('div', { class: 'live-thought', 'aria-live': 'polite' },
      renderText(pending.thoughts[pending.thoughts.length - 1]));
  }

  function renderLiveDrafts(pending) {
    if (!pending.drafts.length) return null;
    return h('div', { class: 'live-drafts' }, pending.drafts.map((draft) => {
      const caption = `Draft ${draft.number}`;
      return h('figure', { class: 'figure draft' },
        h('button', {
          type: 'button', class: 'open', 'data-lightbox': '', 'data-group': 'drafts',
          'data-full': draft.data_url, 'data-caption': `${caption} · ${draft.width}×${draft.height}`,
          'aria-label': `Open ${caption}`,
        }, h('img', { src: draft.data_url, alt: caption, width: draft.width || null, height: draft.height || null })),
        h('figcaption', { text: caption }));
    }));
  }

  /** One event of a running turn: keep what it says, and redraw the pending card. */
  function onLive(id, pending, name, data) {
    if (name === 'accepted') {
      pending.ticket = data.ticket;
    } else if (name === 'started') {
      pending.queued = null;
      pending.stage = 'sending';
      pending.summary = data.settings || pending.summary; // inline flags included
    } else if (name === 'progress') {
      if (data.kind === 'queued') pending.queued = data.status;
      else {
        pending.queued = null;
        pending.stage = data.stage;
        pending.label = data.label;
      }
      if (data.kind === 'thought_text') pending.thoughts.push(data.text);
      if (data.kind === 'thought_image') pending.drafts.push(data.image);
    }
    redrawPending(id, pending);
  }

  function redrawPending(id, pending) {
    if (state.threadId !== id) return;
    const node = els.turns.querySelector('li.pending-turn');
    if (!node) return;
    node.replaceWith(renderPending(pending));
    scrollToEnd(false);
  }

  async function cancelTurn(pending) {
    if (!pending.ticket || pending.cancelling) return;
    pending.cancelling = true;
    redrawPending(state.threadId, pending);
    try {
      await api(`/api/live/${pending.ticket}/cancel`, { method: 'POST' });
    } catch (err) {
      pending.cancelling = false;
      redrawPending(state.threadId, pending);
      toast(err.message);
    }
  }

  let ticker = null;
  function tick() {
    const now = performance.now();
    for (const node of els.turns.querySelectorAll('.timer[data-started]')) {
      node.textContent = `${((now - Number(node.dataset.started)) / 1000).toFixed(1)}s`;
    }
    const running = [...state.pending.values()].some((p) => !p.error);
    if (!running) {
      clearInterval(ticker);
      ticker = null;
    }
  }

  // ---------------------------------------------------------------- batches

  const BATCH_STATES = {
    creating: 'Submitting', pending: 'Waiting at Gemini', running: 'Running',
    succeeded: 'Finished', failed: 'Failed', cancelled: 'Cancelled', expired: 'Expired',
  };
  let batchTimer = null;

  function setBatchMode() {
    const on = els.batch.checked;
    els.prompt.placeholder = on
      ? 'One prompt per line (a line like --ar 16:9 sets it for all), or attach a .txt, .csv or .jsonl…'
      : 'Describe an image or an edit…';
    els.fileInput.accept = on ? 'image/*,.txt,.csv,.tsv,.jsonl,.ndjson' : 'image/*';
    if (!on) state.promptFiles = [];
    renderRefTray();
    setBusy();
  }

  async function sendBatch() {
    const prompts = els.prompt.value.trim();
    if (!prompts && !state.promptFiles.length) {
      toast('Write one prompt per line, or attach a .txt, .csv or .jsonl file of prompts.');
      els.prompt.focus();
      return;
    }
    let id = state.threadId;
    if (!id) {
      id = newThreadId();
      state.threadId = id;
      state.thread = { id, title: '', turns: [], batches: [] };
      history.pushState(null, '', `#/t/${id}`);
    }
    const form = new FormData();
    form.append('prompts', prompts);
    for (const [key, value] of Object.entries(selectedOptions())) form.append(key, String(value));
    for (const ref of state.refs) form.append('refs', ref.file, ref.name);
    for (const file of state.promptFiles) form.append('file', file, file.name);
    els.send.disabled = true;
    try {
      const data = await api(`/api/threads/${id}/batches`, { method: 'POST', form });
      toast(data.message);
      state.refs = [];
      state.promptFiles = [];
      els.prompt.value = '';
      autosize();
      renderRefTray();
      if (state.thread && state.thread.id === id) {
        state.thread.batches = [...(state.thread.batches || []), data.batch];
        state.thread.saved = true;
        rememberThread(id);
      }
      renderThread();
      loadThreads();
      watchBatches();
    } catch (err) {
      toast(err.message);
    }
    setBusy();
  }

  function renderBatch(batch) {
    const counts = batch.counts || {};
    const done = counts.done || 0;
    const head = h('div', { class: 'batch-head' },
      h('strong', { text: `Batch ${batch.short}` }),
      h('span', { text: ` · ${batch.total} prompts · ${batch.label} · ` }),
      h('span', { class: `batch-state ${batch.state}`, text: BATCH_STATES[batch.state] || batch.state }));
    const body = [];
    if (batch.summary) body.push(h('p', { class: 'batch-summary', text: batch.summary }));
    else body.push(h('p', { class: 'batch-summary', text: 'Batch jobs run at half price; results usually come within a few hours (at most 24 h). This page checks every few seconds.' }));
    if (batch.lines) {
      const shown = batch.lines.filter((line) => line.images.length);
      body.push(h('div', { class: 'batch-grid' }, shown.map((line) => h('div', { class: 'batch-item' },
        figure({ ...line.images[0], kind: 'image' }, `${line.number}. ${line.prompt}`),
        h('span', { class: 'batch-caption', text: `${line.number}. ${line.prompt}` })))));
      const failed = batch.lines.filter((line) => !line.images.length);
      if (failed.length) {
        body.push(h('ul', { class: 'notices' }, failed.map((line) => h('li', { class: 'warn' },
          h('span', { text: line.status === 'blocked' ? '🚫' : '⚠️' }),
          h('span', { text: ` ${line.number}. ${line.prompt} — ${line.error || line.status}` })))));
      }
    }
    const actions = h('div', { class: 'meta' },
      batch.zip_url ? h('a', { class: 'chip-btn zip-link', href: batch.zip_url, download: '' },
        icon('download'), `Download ${done} image${done === 1 ? '' : 's'} (zip)`) : null,
      batch.ended ? null : h('button', {
        type: 'button', class: 'link-btn', text: 'Cancel batch', onclick: () => cancelBatch(batch),
      }));
    return h('li', { class: 'turn batch', 'data-batch': batch.id },
      h('div', { class: 'bot-msg' }, h('div', { class: 'bot-card batch-card' }, head, body, actions)));
  }

  async function loadBatchLines(thread) {
    const ready = (thread.batches || []).filter((b) => b.zip_url && !b.lines);
    await Promise.all(ready.map(async (batch) => {
      try {
        batch.lines = (await api(`/api/batches/${batch.id}`)).lines;
      } catch (err) {
        batch.lines = [];
      }
    }));
    if (ready.length && state.thread === thread) renderThread();
    if ((thread.batches || []).some((b) => !b.ended)) watchBatches();
  }

  function watchBatches() {
    if (batchTimer) return;
    batchTimer = setInterval(async () => {
      const thread = state.thread;
      const open = thread && (thread.batches || []).filter((b) => !b.ended);
      if (!open || !open.length) {
        clearInterval(batchTimer);
        batchTimer = null;
        return;
      }
      try {
        const data = await api(`/api/batches?thread=${thread.id}`);
        const known = new Map(thread.batches.map((b) => [b.id, b]));
        thread.batches = data.batches.reverse().map((b) => ({ ...b, lines: (known.get(b.id) || {}).lines }));
        renderThread();
        loadBatchLines(thread);
      } catch (err) {
        // a restart or a blip: the next tick asks again
      }
    }, 5000);
  }

  async function cancelBatch(batch) {
    if (!window.confirm('Cancel this batch? Prompts that finished are kept; the rest are not run.')) return;
    try {
      const data = await api(`/api/batches/${batch.id}/cancel`, { method: 'POST' });
      Object.assign(batch, data.batch);
      renderThread();
      loadBatchLines(state.thread);
    } catch (err) {
      toast(err.message);
    }
  }

  // ---------------------------------------------------------------- sending

  const INLINE_RATIO = /(?:^|\s)(?:--|\u2014|\u2013)(?:ar|aspect|aspect-ratio|ratio)(?:=|\s+)(\S+)/gi;

  /** The aspect ratio the turn will use, as [w, h]: an inline flag wins over the selector. */
  function effectiveRatio(prompt, files) {
    const typed = [...prompt.matchAll(INLINE_RATIO)].map((m) => m[1]).pop();
    const ratios = state.config ? state.config.ratios : [];
    const chosen = typed && (ratios.includes(typed) || typed.toLowerCase() === 'auto')
      ? typed : els.ratio.value;
    if (ratios.includes(chosen)) return chosen.split(':').map(Number);
    const first = files.find((f) => f.width && f.height); // auto matches the input image
    return first ? [first.width, first.height] : [1, 1];
  }

  function setBusy() {
    const busy = Boolean(state.threadId && state.pending.get(state.threadId)
      && !state.pending.get(state.threadId).error);
    els.send.disabled = busy;
    els.send.querySelector('.send-label').textContent = busy ? 'Generating…'
      : (els.batch.checked ? 'Submit batch' : 'Generate');
  }

  async function send(event) {
    if (event) event.preventDefault();
    if (els.batch.checked) {
      sendBatch();
      return;
    }
    const prompt = els.prompt.value.trim();
    if (!prompt) {
      toast('Write what to draw, or what to change in the attached image.');
      els.prompt.focus();
      return;
    }
    let id = state.threadId;
    const current = id && state.pending.get(id);
    if (current && !current.error) return;
    if (state.thread && state.thread.loading) return;
    if (!id) {
      id = newThreadId();
      state.threadId = id;
      state.thread = { id, title: '', turns: [] };
      history.pushState(null, '', `#/t/${id}`);
    }
    const files = state.refs;
    const form = new FormData();
    form.append('prompt', prompt);
    for (const [key, value] of Object.entries(selectedOptions())) form.append(key, String(value));
    if (els.count.value !== '1') form.append('count', els.count.value);
    for (const ref of files) form.append('refs', ref.file, ref.name);
    const pending = {
      prompt, files, started: performance.now(), startedAt: Date.now() / 1000,
      summary: summary(), ratio: effectiveRatio(prompt, files), error: null,
      ticket: null, queued: null, stage: null, label: null, thoughts: [], drafts: [],
    };
    state.pending.set(id, pending);
    state.refs = [];
    els.prompt.value = '';
    autosize();
    renderRefTray();
    state.stick = true;
    afterPendingChange(id);
    if (!ticker) ticker = setInterval(tick, 100);
    try {
      const data = await postLive(`/api/threads/${id}/turns`, form,
        (name, event) => onLive(id, pending, name, event));
      state.pending.delete(id);
      files.forEach((f) => f.url && URL.revokeObjectURL(f.url));
      if (state.thread && state.thread.id === id) {
        state.thread.turns.push(data.turn);
        state.thread.saved = true;
        rememberThread(id);
      }
    } catch (err) {
      pending.error = err;
      pending.finished = performance.now();
      restoreComposer(id, pending);
    }
    afterPendingChange(id);
    loadThreads();
  }

  function restoreComposer(id, pending) {
    if (state.threadId !== id || els.prompt.value.trim() || state.refs.length) return;
    els.prompt.value = pending.prompt;
    state.refs = pending.files.slice();
    autosize();
    renderRefTray();
  }

  function afterPendingChange(id) {
    if (state.threadId === id) renderThread();
    renderThreads();
    setBusy();
  }

  async function deleteTurn(turn) {
    if (!window.confirm('Delete this turn? Later turns will no longer see its images.')) return;
    try {
      await api(`/api/turns/${turn.id}`, { method: 'DELETE' });
      if (state.thread) state.thread.turns = state.thread.turns.filter((t) => t.id !== turn.id);
      renderThread();
      loadThreads();
    } catch (err) {
      toast(err.message);
    }
  }

  function autosize() {
    els.prompt.style.height = 'auto';
    els.prompt.style.height = `${Math.min(els.prompt.scrollHeight, 220)}px`;
  }

  // ---------------------------------------------------------------- lightbox

  function openLightbox(trigger) {
    // Steps through what can be seen of the same kind: results (drafts only while their
    // "Thinking" is open) or references, so "3 / 5" counts what the arrows show.
    const group = trigger.dataset.group;
    const items = [...els.turns.querySelectorAll(`[data-lightbox][data-group="${group}"]`)]
      .filter((item) => item === trigger || item.checkVisibility());
    state.lightbox = { items, index: Math.max(0, items.indexOf(trigger)) };
    showLightboxItem();
    if (!els.lightbox.open) els.lightbox.showModal();
  }

  function showLightboxItem() {
    const { items, index } = state.lightbox;
    const item = items[index];
    if (!item) return;
    els.lbImg.src = item.dataset.full;
    els.lbImg.alt = item.dataset.caption || '';
    els.lbCaption.textContent = `${item.dataset.caption || ''}  (${index + 1} / ${items.length})`;
    els.lbDownload.href = item.dataset.download || item.dataset.full;
    els.lbPrev.hidden = items.length < 2;
    els.lbNext.hidden = items.length < 2;
  }

  function stepLightbox(delta) {
    const count = state.lightbox.items.length;
    if (count < 2) return;
    state.lightbox.index = (state.lightbox.index + delta + count) % count;
    showLightboxItem();
  }

  // ---------------------------------------------------------------- navigation and events

  function closeNav() {
    els.app.classList.remove('nav-open');
    els.scrim.hidden = true;
  }

  function bindDragAndDrop() {
    let depth = 0;
    const hasFiles = (event) => [...(event.dataTransfer ? event.dataTransfer.types : [])].includes('Files');
    window.addEventListener('dragenter', (event) => {
      if (!hasFiles(event)) return;
      depth += 1;
      els.drop.hidden = false;
    });
    window.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (!depth) els.drop.hidden = true;
    });
    window.addEventListener('dragover', (event) => {
      if (hasFiles(event)) event.preventDefault();
    });
    window.addEventListener('drop', (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      depth = 0;
      els.drop.hidden = true;
      addFiles([...event.dataTransfer.files]);
    });
  }

  function bindEvents() {
    els.composer.addEventListener('submit', send);
    els.prompt.addEventListener('input', autosize);
    els.prompt.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) send(event);
    });
    els.attach.addEventListener('click', () => els.fileInput.click());
    els.fileInput.addEventListener('change', () => {
      addFiles([...els.fileInput.files]);
      els.fileInput.value = '';
    });
    document.addEventListener('paste', (event) => {
      const files = [...(event.clipboardData ? event.clipboardData.items : [])]
        .filter((item) => item.kind === 'file').map((item) => item.getAsFile()).filter(Boolean);
      if (!files.length) return;
      event.preventDefault();
      addFiles(files);
    });
    bindDragAndDrop();
    for (const select of [els.model, els.ratio, els.size, els.search]) {
      select.addEventListener('change', saveSettings);
    }
    els.batch.addEventListener('change', () => {
      setBatchMode();
      updateOptionStates();
    });
    els.newThread.addEventListener('click', newThread);
    els.rename.addEventListener('click', startRenaming);
    els.title.addEventListener('dblclick', startRenaming);
    els.titleInput.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') finishRenaming();
      if (event.key === 'Escape') stopRenaming();
    });
    els.titleInput.addEventListener('blur', finishRenaming);
    els.deleteThread.addEventListener('click', deleteThread);
    els.menu.addEventListener('click', () => {
      els.app.classList.add('nav-open');
      els.scrim.hidden = false;
    });
    els.scrim.addEventListener('click', closeNav);
    els.turns.addEventListener('click', (event) => {
      const trigger = event.target.closest('[data-lightbox]');
      if (trigger) openLightbox(trigger);
    });
    els.chat.addEventListener('scroll', () => {
      const gap = els.chat.scrollHeight - els.chat.scrollTop - els.chat.clientHeight;
      state.stick = gap < 160;
    });
    els.lbClose.addEventListener('click', () => els.lightbox.close());
    els.lbPrev.addEventListener('click', () => stepLightbox(-1));
    els.lbNext.addEventListener('click', () => stepLightbox(1));
    els.lightbox.addEventListener('click', (event) => {
      if (event.target === els.lightbox) els.lightbox.close();
    });
    els.lightbox.addEventListener('keydown', (event) => {
      if (event.key === 'ArrowLeft') stepLightbox(-1);
      if (event.key === 'ArrowRight') stepLightbox(1);
    });
    els.lightbox.addEventListener('close', () => els.lbImg.removeAttribute('src'));
    window.addEventListener('hashchange', () => {
      openThread(threadFromHash()).then(setBusy);
    });
  }

  function renderExamples() {
    els.examples.replaceChildren(...EXAMPLES.map((text) => h('button', {
      type: 'button', class: 'example', text,
      onclick: () => {
        els.prompt.value = text;
        autosize();
        els.prompt.focus();
      },
    })));
  }

  async function init() {
    bindEvents();
    renderExamples();
    try {
      state.config = await api('/api/config');
    } catch (err) {
      els.empty.hidden = true;
      els.turns.replaceChildren(h('li', { class: 'error-card', role: 'alert' }, icon('alert'),
        appendInline(h('div', { class: 'error-text' }), err.message)));
      return;
    }
    els.banner.hidden = !state.config.offline;
    setupSelectors(state.config);
    applySettings(state.config.defaults);
    await loadThreads();
    if (!location.hash) { // a plain `/`; `#/` is a new thread on purpose
      const last = startingThread();
      if (last) history.replaceState(null, '', `#/t/${last}`);
    }
    await openThread(threadFromHash());
    setBusy();
    document.body.dataset.ready = 'true';
  }

  init();
})();
