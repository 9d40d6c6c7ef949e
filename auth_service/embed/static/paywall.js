/* paywall.js: the registration wall of auth-service inside a news site's page.
 *
 *   <script src="https://auth.news.example/embed/paywall.js" defer></script>
 *   <div data-paywall data-article="SLUG"> the article's opening </div>
 *
 * Plain JavaScript with no dependencies and no build step; docs/embed.md says the rest
 * (events, theming, languages, the CSP the host page needs). The service is this
 * script's own origin and path. The wall's form lives in a shadow root, so that no style
 * crosses between it and the page; the article's body goes into the page itself, where
 * the page's styles apply. Nothing here uses eval, new Function, innerHTML or inline
 * styles, so a strict Content-Security-Policy naming the service is enough.
 */
(() => {
  "use strict";

  // Read through Document's own getter: markup such as <img name="currentScript"> in
  // the host page would otherwise stand in for document.currentScript (clobbering) and
  // point the wall at another server.
  const own = Object.getOwnPropertyDescriptor(Document.prototype, "currentScript").get.call(document);
  const script = own instanceof HTMLScriptElement ? own : null;
  const LOADED = Symbol.for("auth-service.paywall");
  if (!script || window[LOADED]) return; // loaded twice: the first copy does the work
  window[LOADED] = true;

  const SERVICE = new URL("..", script.src); // https://auth.news.example/ (or /compte/)
  const api = (path) => new URL("api/v1/" + path, SERVICE).href;
  const MAX_NEXT = 2048; // what the service accepts as the way back

  /* All the words of the wall. The newsletter line is, to the character, the wording the
     service records as the reader's consent (tests/embed checks it against its catalog). */
  const TEXT = {
    fr: {
      title: "Inscrivez-vous gratuitement pour continuer à lire",
      lead: "La suite de cet article est réservée aux lecteurs inscrits. L’inscription est gratuite\u00a0: saisissez votre adresse e-mail et nous vous enverrons un lien de connexion. Aucun mot de passe n’est nécessaire.",
      email: "Adresse e-mail",
      hint: "Par exemple\u00a0: example@domain.com",
      newsletter: "Recevoir la newsletter «\u00a0La Une du jour\u00a0» (gratuite, un e-mail chaque matin\u202f; désinscription en un clic).",
      terms: (site) => `En continuant, vous acceptez les conditions d’utilisation du site${site ? " " + site : ""}. Nous utilisons votre adresse uniquement pour vous connecter et, si vous le demandez, pour vous envoyer la newsletter.`,
      submit: "S’inscrire ou se connecter",
      already: "Vous avez déjà un compte\u202f? Saisissez la même adresse\u00a0: nous vous enverrons un lien de connexion.",
      socialTitle: "Ou connectez-vous avec un compte que vous avez déjà",
      socialWith: (label) => `Se connecter avec ${label}`,
      spent: (n, days) => n === 1
        ? `Vous avez lu l’article gratuit offert tous les ${days} jours.`
        : `Vous avez lu les ${n} articles gratuits offerts tous les ${days} jours.`,
      left: (n) => n === 0
        ? "C’était votre dernier article gratuit pour le moment."
        : n === 1 ? "Il vous reste 1 article gratuit." : `Il vous reste ${n} articles gratuits.`,
      free: "Inscrivez-vous gratuitement pour tout lire sans limite.",
      yes: (address) => `Oui, utiliser ${address}`,
      asTyped: (address) => `Non, utiliser ${address} telle quelle`,
      sentTitle: "Consultez votre boîte de réception",
      sentTo: "Nous avons envoyé un e-mail à",
      sentHelp: "Il contient un lien qui vous connecte et vous ramène là où vous étiez. Ouvrez-le sur cet appareil, ou saisissez ci-dessous le code à 6 chiffres indiqué dans l’e-mail.",
      code: "Code à 6 chiffres",
      codeSubmit: "Se connecter avec ce code",
      noEmail: "Pas reçu d’e-mail\u202f?",
      noEmailHelp: "L’envoi peut prendre une minute. Vérifiez votre dossier de courriers indésirables, ou demandez un nouvel envoi. Si l’adresse est erronée, saisissez-en une autre.",
      resend: "Renvoyer l’e-mail",
      other: "Utiliser une autre adresse",
      resent: (address) => `E-mail renvoyé\u00a0: un nouvel e-mail est en route vers ${address}.`,
      tries: (n) => n === 1 ? "Il vous reste 1 essai." : `Il vous reste ${n} essais.`,
      signedIn: (address) => `Vous êtes connecté avec l’adresse ${address}. Bonne lecture\u202f!`,
      unlocked: "L’article complet est affiché.",
      network: "Impossible de joindre le service pour le moment. Vérifiez votre connexion, puis réessayez.",
      failed: "Un problème est survenu de notre côté. Merci de réessayer dans un instant.",
      retry: "Réessayer",
    },
    en: {
      title: "Sign up for free to keep reading",
      lead: "The rest of this article is reserved for registered readers. Registration is free: enter your email and we will send you a link to sign in. No password needed.",
      email: "Email address",
      hint: "For example: example@domain.com",
      newsletter: "Send me the daily front page newsletter (free, one email each morning; unsubscribe in one click).",
      terms: (site) => `By continuing you accept the terms of use of ${site || "this site"}. We use your address only to sign you in and, if you ask for it, to send you the newsletter.`,
      submit: "Sign up or sign in",
      already: "Already have an account? Enter the same address: we will send you a sign-in link.",
      socialTitle: "Or sign in with an account you already have",
      socialWith: (label) => `Sign in with ${label}`,
      spent: (n, days) => n === 1
        ? `You have read the free article you get every ${days} days.`
        : `You have read the ${n} free articles you get every ${days} days.`,
      left: (n) => n === 0
        ? "That was your last free article for now."
        : n === 1 ? "You have 1 free article left." : `You have ${n} free articles left.`,
      free: "Sign up for free to read everything without limits.",
      yes: (address) => `Yes, use ${address}`,
      asTyped: (address) => `No, use ${address} as typed`,
      sentTitle: "Check your email",
      sentTo: "We sent an email to",
      sentHelp: "It holds a link that signs you in and brings you back to where you were. Open it on this device, or enter the 6-digit code from the email below.",
      code: "6-digit code",
      codeSubmit: "Sign in with this code",
      noEmail: "No email?",
      noEmailHelp: "It can take a minute. Check your spam folder, or send it again. If the address is wrong, enter another one.",
      resend: "Send again",
      other: "Use another address",
      resent: (address) => `Sent again: a new email is on its way to ${address}.`,
      tries: (n) => n === 1 ? "You have 1 try left." : `You have ${n} tries left.`,
      signedIn: (address) => `You are signed in as ${address}. Enjoy your reading!`,
      unlocked: "The full article is now shown.",
      network: "We could not reach the service just now. Check your connection and try again.",
      failed: "Something went wrong on our side. Please try again in a moment.",
      retry: "Try again",
    },
  };

  /* An element with its attributes, listeners (onclick: …) and children (text is text). */
  const h = (tag, attributes, ...children) => {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value == null || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    node.append(...children.flat(Infinity).filter((child) => child != null && child !== false));
    return node;
  };

  /* The article's body, sanitised by the service (nh3, at import), parsed in an inert
     document and rebuilt from an allow-list of the same tags and attributes: defence in
     depth, and no innerHTML. */
  const TAGS = new Set(("P H2 H3 H4 BLOCKQUOTE UL OL LI STRONG EM B I A BR FIGURE " +
    "FIGCAPTION CITE Q ABBR SUB SUP").split(" "));
  const ATTRIBUTES = { A: ["href", "title"], ABBR: ["title"], Q: ["cite"] };
  const DROPPED = new Set("SCRIPT STYLE TEMPLATE IFRAME OBJECT EMBED SVG MATH NOSCRIPT".split(" "));
  let policy; // Trusted Types, for host pages that enforce them ("trusted-types paywall")

  const linkable = (value) => {
    try {
      return /^(https?|mailto):$/.test(new URL(value, location.href).protocol);
    } catch (error) {
      return false;
    }
  };

  const rebuild = (node) => {
    if (node.nodeType === Node.TEXT_NODE) return document.createTextNode(node.data);
    if (node.nodeType !== Node.ELEMENT_NODE || DROPPED.has(node.tagName)) return null;
    const children = [...node.childNodes].map(rebuild);
    if (!TAGS.has(node.tagName)) return children; // unknown markup: keep its text
    const copy = h(node.tagName.toLowerCase(), null, children);
    for (const name of ATTRIBUTES[node.tagName] || []) {
      const value = node.getAttribute(name);
      if (value != null && (name === "title" || linkable(value))) copy.setAttribute(name, value);
    }
    if (node.tagName === "A") copy.rel = "noopener noreferrer";
    return copy;
  };

  const bodyNodes = (html) => {
    if (window.trustedTypes && policy === undefined) {
      try {
        policy = trustedTypes.createPolicy("paywall", { createHTML: (text) => text });
      } catch (error) {
        policy = null;
      }
    }
    const parsed = new DOMParser().parseFromString(policy ? policy.createHTML(html) : html, "text/html");
    return [...parsed.body.childNodes].map(rebuild).flat(Infinity).filter(Boolean);
  };

  /* The wall of one element. */
  class Wall {
    constructor(element) {
      this.element = element;
      this.slug = element.dataset.article || "";
      const asked = (element.dataset.lang || document.documentElement.lang || "").slice(0, 2);
      this.lang = TEXT[asked.toLowerCase()] ? asked.toLowerCase() : "fr";
      this.t = TEXT[this.lang];
      this.address = ""; // as typed in the form
      this.sentTo = ""; // as the service wrote it back
      this.newsletter = false;
      this.busy = false;
      this.inserted = false;
    }

    /* Tell the page: a bubbling DOM event, and the page's dataLayer if it has one. */
    emit(name, detail) {
      detail = Object.assign({ article: this.slug }, detail);
      this.element.dispatchEvent(new CustomEvent("paywall:" + name, { bubbles: true, detail }));
      if (Array.isArray(window.dataLayer)) {
        window.dataLayer.push(Object.assign({ event: "paywall:" + name }, detail));
      }
    }

    /* One call of the JSON API: {status, data} or {status, error: {code, message, …}}. */
    async call(method, path, body) {
      const headers = { Accept: "application/json", "Accept-Language": this.lang };
      if (body) headers["Content-Type"] = "application/json";
      let response;
      try {
        response = await fetch(api(path), {
          method,
          headers,
          body: body ? JSON.stringify(body) : undefined,
          credentials: "include",
          cache: "no-store",
        });
      } catch (error) {
        return { status: 0, error: { code: "network", message: this.t.network } };
      }
      const data = await response.json().catch(() => null);
      if (response.ok) return { status: response.status, data: data || {} };
      const error = data && data.error && data.error.message
        ? data.error
        : { code: "http_" + response.status, message: this.t.failed };
      return { status: response.status, error };
    }

    /* Tell the page of a refusal of the service, or of the network failing. */
    report(answer) {
      this.emit("error", { code: answer.error.code, status: answer.status });
    }

    async start() {
      const answer = await this.call("GET", "articles/" + encodeURIComponent(this.slug));
      if (answer.error) {
        this.report(answer);
        if (answer.status === 0 || answer.status >= 500 || answer.status === 429) {
          this.render([], { alert: answer.error.message, retry: true });
        }
        return; // an unknown article: the page stays as the host wrote it
      }
      const article = answer.data;
      this.emit("ready", { entitled: article.entitled });
      if (!article.entitled) return this.showWall(article);
      const metered = article.access === "registered" && article.meter && article.meter.free_articles > 0;
      if (metered && !(await this.call("GET", "me")).data?.signed_in) {
        return this.unlock(article, this.meterNote(article.meter));
      }
      this.unlock(article, null);
    }

    /* The shadow root the wall's own elements live in, created on first use. */
    mount() {
      if (this.panel) return;
      this.host = h("div", { class: "paywall-ui" });
      const root = this.host.attachShadow({ mode: "open" });
      this.panel = h("div", { class: "paywall", lang: this.lang, hidden: true });
      const reveal = () => { this.panel.hidden = false; };
      const sheet = h("link", { rel: "stylesheet", href: new URL("embed/paywall.css", SERVICE).href, onload: reveal, onerror: reveal });
      setTimeout(reveal, 3000); // a slow stylesheet never hides the wall for long
      this.live = h("div", { class: "paywall-live", role: "status", "aria-live": "polite" });
      root.append(sheet, this.live, this.panel);
      this.element.append(this.host);
    }

    /* Replace what the panel shows; an alert (with focus) above it if asked. */
    render(children, { alert, retry, focus } = {}) {
      this.mount();
      const box = alert && h("div", { class: "paywall__alert", role: "alert", id: "pw-alert", tabindex: "-1" },
        h("p", null, alert),
        retry && h("button", { type: "button", class: "paywall__button", onclick: () => this.retry() }, this.t.retry));
      this.panel.replaceChildren(...[box, children].flat().filter(Boolean));
      // Focus goes to what needs reading; never on the page's first load (retry).
      const target = box && !retry ? box : focus;
      if (target) target.focus();
    }

    retry() {
      this.panel.replaceChildren();
      this.start();
    }

    say(message) {
      this.live.textContent = "";
      setTimeout(() => { this.live.textContent = message; }, 100);
    }

    meterNote(meter) {
      return h("div", { class: "paywall__meter" },
        h("p", null, `${this.t.left(meter.left)} ${this.t.free}`),
        h("button", { type: "button", class: "paywall__button paywall__button--secondary", onclick: () => this.showForm({ focus: "email" }) }, this.t.submit));
    }

    /* --- The form: sign up or sign in ----------------------------------------------- */

    async showWall(article) {
      this.meter = article.meter;
      if (!this.providers) {
        // The "Sign in with" buttons; without them (an error) the form is the whole wall.
        this.providers = (await this.call("GET", "providers")).data?.providers || [];
      }
      this.showForm();
      this.emit("wall-shown", { meter: article.meter });
    }

    showForm({ error, suggestion, alert, focus } = {}) {
      const t = this.t;
      const described = error ? "pw-email-hint pw-email-error" : "pw-email-hint";
      const email = h("input", {
        type: "email", id: "pw-email", name: "email", autocomplete: "email", inputmode: "email",
        spellcheck: "false", autocapitalize: "off", required: true,
        "aria-describedby": described, "aria-invalid": error ? "true" : null,
      });
      email.value = this.address;
      const box = h("input", { type: "checkbox", id: "pw-newsletter", name: "newsletter" });
      box.checked = this.newsletter;
      const remember = () => { this.address = email.value; this.newsletter = box.checked; };
      const problem = error && h("div", { class: "paywall__error", id: "pw-email-error", tabindex: "-1" },
        h("p", null, error),
        suggestion && h("div", { class: "paywall__actions" },
          h("button", { type: "button", class: "paywall__button", onclick: () => { remember(); this.address = suggestion; this.ask(true); } }, t.yes(suggestion)),
          h("button", { type: "button", class: "paywall__button paywall__button--secondary", onclick: () => { remember(); this.ask(true); } }, t.asTyped(this.address.trim()))));
      const meter = this.meter && this.meter.free_articles > 0 && !this.inserted
        && h("p", { class: "paywall__note" }, t.spent(this.meter.free_articles, this.meter.period_days));
      const title = h("h2", { class: "paywall__title", id: "pw-title" }, t.title);
      const form = h("form", { class: "paywall__form", novalidate: true, onsubmit: (event) => { event.preventDefault(); remember(); this.ask(false); } },
        h("div", { class: "paywall__field" + (error ? " paywall__field--error" : "") },
          h("label", { for: "pw-email" }, t.email),
          h("p", { class: "paywall__hint", id: "pw-email-hint" }, t.hint),
          problem,
          email),
        h("div", { class: "paywall__check" }, box, h("label", { for: "pw-newsletter" }, t.newsletter)),
        h("p", { class: "paywall__small" }, t.terms(this.element.dataset.siteName)),
        h("button", { type: "submit", class: "paywall__button" }, t.submit),
        h("p", { class: "paywall__small" }, t.already),
        this.socialButtons(remember));
      const section = h("section", { class: "paywall__wall", "aria-labelledby": "pw-title" },
        title, !this.inserted && h("p", null, t.lead), meter, form);
      this.render(section, { alert, focus: problem || (focus === "email" ? email : null) });
    }

    /* One button a provider, each submitting the box's choice to the service, which
       sends the whole page on to the provider and, once signed in, back here. */
    socialButtons(remember) {
      if (!this.providers || !this.providers.length) return null;
      return h("div", { class: "paywall__social", role: "group", "aria-labelledby": "pw-social" },
        h("p", { class: "paywall__small", id: "pw-social" }, this.t.socialTitle),
        ...this.providers.map((provider) => h("button", {
          type: "button",
          class: "paywall__button paywall__provider paywall__provider--" + provider.brand,
          onclick: () => { remember(); this.signInWith(provider.name); },
        }, provider.icon && h("img", { src: provider.icon, alt: "", width: 20, height: 20 }),
        this.t.socialWith(provider.label))));
    }

    async signInWith(name) {
      if (this.busy) return;
      this.busy = true;
      const body = { next: this.next() };
      if (this.newsletter) body.newsletters = ["daily"];
      const answer = await this.call("POST", "login/with/" + encodeURIComponent(name), body);
      this.busy = false;
      if (answer.error) {
        this.report(answer);
        return this.showForm({ alert: answer.error.message });
      }
      this.emit("provider-chosen", { provider: name });
      location.assign(answer.data.url);
    }

    /* Ask for a link for this.address: "check your email", or the form with its error. */
    async ask(asTyped) {
      if (this.busy) return;
      this.busy = true;
      const body = { email: this.address.trim(), next: this.next() };
      if (this.newsletter) body.newsletters = ["daily"];
      if (asTyped) body.as_typed = true;
      const answer = await this.call("POST", "login", body);
      this.busy = false;
      if (answer.error) {
        this.report(answer);
        const code = answer.error.code;
        if (code === "invalid_email" || code === "address_refused" || code === "invalid_field") {
          return this.showForm({ error: answer.error.message, suggestion: answer.error.suggestion });
        }
        return this.showForm({ alert: answer.error.message });
      }
      this.sentTo = answer.data.sent_to || body.email;
      this.emit("link-requested", { resent: false });
      this.showSent();
    }

    next() {
      const here = location.href.split("#")[0];
      return here.length <= MAX_NEXT ? here : location.origin + location.pathname;
    }

    /* --- Check your email ------------------------------------------------------------ */

    showSent({ error, alert, resent } = {}) {
      const t = this.t;
      const title = h("h2", { class: "paywall__title", id: "pw-sent-title", tabindex: "-1" }, t.sentTitle);
      const code = h("input", {
        type: "text", id: "pw-code", name: "code", inputmode: "numeric", autocomplete: "one-time-code",
        pattern: "[0-9]*", maxlength: "12", class: "paywall__code",
        "aria-describedby": error ? "pw-code-error" : null, "aria-invalid": error ? "true" : null,
      });
      const problem = error && h("p", { class: "paywall__error", id: "pw-code-error", tabindex: "-1" }, error);
      const note = resent && h("p", { class: "paywall__note", id: "pw-resent" }, t.resent(this.sentTo));
      const section = h("section", { class: "paywall__sent", "aria-labelledby": "pw-sent-title" },
        title,
        h("p", null, t.sentTo + " ", h("strong", { class: "paywall__address" }, this.sentTo), "."),
        h("p", null, t.sentHelp),
        h("form", { class: "paywall__form", novalidate: true, onsubmit: (event) => { event.preventDefault(); this.enter(code.value); } },
          h("div", { class: "paywall__field" + (error ? " paywall__field--error" : "") },
            h("label", { for: "pw-code" }, t.code), problem, code),
          h("button", { type: "submit", class: "paywall__button" }, t.codeSubmit)),
        h("div", { class: "paywall__resend" },
          h("h3", null, t.noEmail),
          h("p", null, t.noEmailHelp),
          note,
          h("div", { class: "paywall__actions" },
            h("button", { type: "button", class: "paywall__button paywall__button--secondary", onclick: () => this.resend() }, t.resend),
            h("button", { type: "button", class: "paywall__button paywall__button--secondary", onclick: () => this.showForm({ focus: "email" }) }, t.other))));
      this.render(section, { alert, focus: problem || (resent ? null : title) });
      if (resent) this.say(t.resent(this.sentTo));
      else if (!error && !alert) this.say(`${t.sentTitle}. ${t.sentTo} ${this.sentTo}.`);
    }

    async resend() {
      if (this.busy) return;
      this.busy = true;
      const body = { email: this.sentTo, next: this.next(), as_typed: true };
      if (this.newsletter) body.newsletters = ["daily"];
      const answer = await this.call("POST", "login", body);
      this.busy = false;
      if (answer.error) {
        this.report(answer);
        return this.showSent({ alert: answer.error.message });
      }
      this.emit("link-requested", { resent: true });
      this.showSent({ resent: true });
    }

    async enter(code) {
      if (this.busy) return;
      this.busy = true;
      const answer = await this.call("POST", "login/code", { code });
      this.busy = false;
      if (answer.error) {
        this.report(answer);
        const { code: reason, message } = answer.error;
        if (reason === "wrong_code") {
          const left = answer.error.tries_left;
          return this.showSent({ error: left == null ? message : `${message} ${this.t.tries(left)}` });
        }
        if (reason === "malformed_code" || reason === "invalid_field") return this.showSent({ error: message });
        if (answer.status === 410 || answer.status === 400) return this.showForm({ alert: message });
        return this.showSent({ alert: message });
      }
      this.emit("signed-in", { method: "code" });
      const article = await this.call("GET", "articles/" + encodeURIComponent(this.slug));
      if (article.error || !article.data.entitled) {
        if (article.error) this.report(article);
        return this.showForm({ alert: article.error ? article.error.message : this.t.failed });
      }
      const note = h("p", { class: "paywall__signed-in", tabindex: "-1" }, this.t.signedIn(answer.data.email || this.sentTo));
      this.unlock(article.data, note);
      note.focus();
    }

    /* --- The article ------------------------------------------------------------------ */

    /* Put the body in place of the element's content (once); a note above it, if any. */
    unlock(article, note) {
      if (!this.inserted) {
        this.inserted = true;
        this.element.replaceChildren(...bodyNodes(article.body_html || ""));
      }
      if (note) {
        this.render(note);
        this.element.prepend(this.host);
      } else if (this.host) {
        this.host.remove();
      }
      if (this.live) this.say(this.t.unlocked);
      this.emit("unlocked", {});
    }
  }

  const started = new WeakSet();
  const start = () => {
    for (const element of document.querySelectorAll("[data-paywall][data-article]")) {
      if (started.has(element)) continue;
      started.add(element);
      new Wall(element).start();
    }
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
